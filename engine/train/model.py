"""The GRU language model over engine.tokens, and its single-step twin for export.

`SegueGRU` trains fast with torch's fused GRU. `GRUStep` computes exactly the same function
one token at a time with the cell written as explicit MatMuls, so that onnxruntime's
`quantize_dynamic` can turn its weights to int8 (it leaves the ONNX `GRU` op in float).
The embedding and layer 0's input projection are folded into one table (a Gather), which
saves a MatMul per step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    vocab: int
    embed: int = 128
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.1


class SegueGRU(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab, config.embed)
        self.drop = nn.Dropout(config.dropout)
        self.gru = nn.GRU(
            config.embed,
            config.hidden,
            config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.gru_drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, config.vocab)

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor | None = None):
        x = self.drop(self.embed(tokens))
        batch = tokens.shape[0]
        if hidden is None:
            hidden = x.new_zeros(self.config.layers, batch, self.config.hidden)
        size = self.config.hidden
        finals = []
        for k in range(self.config.layers):
            # torch's fused CPU GRU trains ~8x slower here than this loop: all input
            # projections in one MatMul, then one small MatMul per step.
            x_gates = x @ getattr(self.gru, f"weight_ih_l{k}").T + getattr(
                self.gru, f"bias_ih_l{k}"
            )
            w_hh = getattr(self.gru, f"weight_hh_l{k}").T
            b_hh = getattr(self.gru, f"bias_hh_l{k}")
            h = hidden[k]
            outputs = []
            # unbind, not x_gates[:, t]: the backward of a slice per step would write a
            # zero tensor the size of x_gates for every step.
            for g in x_gates.unbind(1):
                h_gates = h @ w_hh + b_hh
                rz = torch.sigmoid(g[:, : 2 * size] + h_gates[:, : 2 * size])
                r, z = rz[:, :size], rz[:, size:]
                n = torch.tanh(g[:, 2 * size :] + r * h_gates[:, 2 * size :])
                h = n + z * (h - n)
                outputs.append(h)
            finals.append(h)
            x = torch.stack(outputs, dim=1)
            if k < self.config.layers - 1:
                x = self.gru_drop(x)
        return self.head(self.drop(x)), torch.stack(finals)

    def checkpoint(self) -> dict:
        return {"config": asdict(self.config), "state": self.state_dict()}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> SegueGRU:
        model = cls(ModelConfig(**checkpoint["config"]))
        model.load_state_dict(checkpoint["state"])
        return model


class GRUStep(nn.Module):
    """One step: (token [1] int64, hidden [layers, 1, hidden]) → (logits [1, vocab], hidden)."""

    def __init__(self, model: SegueGRU) -> None:
        super().__init__()
        cfg = model.config
        self.layers, self.hidden_size = cfg.layers, cfg.hidden
        gru = model.gru
        with torch.no_grad():
            w_ih0 = gru.weight_ih_l0
            # Embedding followed by layer 0's input projection, as one lookup table.
            self.table0 = nn.Parameter(model.embed.weight @ w_ih0.T + gru.bias_ih_l0)
            self.w_ih = nn.ParameterList(
                [
                    nn.Parameter(getattr(gru, f"weight_ih_l{k}").T.contiguous())
                    for k in range(1, cfg.layers)
                ]
            )
            self.b_ih = nn.ParameterList(
                [nn.Parameter(getattr(gru, f"bias_ih_l{k}").clone()) for k in range(1, cfg.layers)]
            )
            self.w_hh = nn.ParameterList(
                [
                    nn.Parameter(getattr(gru, f"weight_hh_l{k}").T.contiguous())
                    for k in range(cfg.layers)
                ]
            )
            self.b_hh = nn.ParameterList(
                [nn.Parameter(getattr(gru, f"bias_hh_l{k}").clone()) for k in range(cfg.layers)]
            )
            self.w_out = nn.Parameter(model.head.weight.T.contiguous())
            self.b_out = nn.Parameter(model.head.bias.clone())

    def forward(self, token: torch.Tensor, hidden: torch.Tensor):
        size = self.hidden_size
        new_hidden = []
        x_gates = self.table0[token]  # [1, 3H]
        x = hidden[0]  # each layer replaces it with its output
        for k in range(self.layers):
            h = hidden[k]
            if k > 0:
                x_gates = torch.matmul(x, self.w_ih[k - 1]) + self.b_ih[k - 1]
            h_gates = torch.matmul(h, self.w_hh[k]) + self.b_hh[k]
            r = torch.sigmoid(x_gates[:, :size] + h_gates[:, :size])
            z = torch.sigmoid(x_gates[:, size : 2 * size] + h_gates[:, size : 2 * size])
            n = torch.tanh(x_gates[:, 2 * size :] + r * h_gates[:, 2 * size :])
            x = (1.0 - z) * n + z * h
            new_hidden.append(x)
        logits = torch.matmul(x, self.w_out) + self.b_out
        return logits, torch.stack(new_hidden)
