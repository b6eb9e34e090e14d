"""The GRU language model over engine.making.tokens.

`SegueGRU` is trained as a sequence model; engine.train.export writes the same function as a
single-step ONNX graph with the GRU cell as explicit MatMuls, which onnxruntime quantizes.
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
