"""Best checkpoint → single-step ONNX (fp32, one file) → int8 by dynamic quantization → models/.

The step graph is written node by node (onnx.helper) rather than traced, so that it is as
small as the cell: per step onnxruntime's cost is mostly per node, not per multiply.

    token [1] int64, hidden [layers, 1, H]  →  logits [1, vocab], hidden_out [layers, 1, H]

Each layer computes its gates as one row `pre = [r+z pre-activations | input part of n |
hidden part of n]` (4H wide), then r, z = σ, n = tanh(n_in + r·n_h), h' = n + z·(h − n):
- layer 0: the embedding, its input projection and both biases of r, z come from one table
  (a Gather by token); one MatMul of h by [W_hr W_hz | 0 | W_hn] adds the rest;
- later layers: one MatMul of [x, h] by a block matrix with the input and hidden weights,
  so each layer costs one quantized MatMul, not two.
The GRU's reset gate multiplies the hidden part of n including its bias, which is why that
part keeps its own columns. `export_fp32` checks the graph against the torch model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from engine.making.tokens import METERS, PREFIX_LEN, TEMPO_EDGES_BPM, TEMPOS, VOCAB
from engine.score.music import DENSITIES, MODES, PARTS, QUADRANTS
from engine.train.data import DATA_DIR
from engine.train.model import SegueGRU

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models"
MODEL_NAME = "segue-gru-int8"
FORMAT_VERSION = 1
INPUTS = ("token", "hidden")
OUTPUTS = ("logits", "hidden_out")
OPSET = 18
MAX_FP32_ERROR = 1e-4  # the ONNX graph against torch, fp32 logits


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cell_weights(model: SegueGRU) -> dict[str, np.ndarray]:
    """The graph's initializers, in the layout the module docstring describes."""
    cfg, gru, size = model.config, model.gru, model.config.hidden

    def arr(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().numpy().astype(np.float32)

    def w(kind: str, k: int) -> np.ndarray:  # [in, 3H], columns r | z | n
        return arr(getattr(gru, f"weight_{kind}_l{k}").T)

    def b(kind: str, k: int) -> np.ndarray:
        return arr(getattr(gru, f"bias_{kind}_l{k}"))

    rz, n = slice(0, 2 * size), slice(2 * size, 3 * size)
    weights = {}
    x_gates = arr(model.embed.weight) @ w("ih", 0) + b("ih", 0)  # [vocab, 3H]
    table = np.zeros((cfg.vocab, 4 * size), np.float32)
    table[:, rz] = x_gates[:, rz] + b("hh", 0)[rz]
    table[:, n] = x_gates[:, n]
    table[:, 3 * size :] = b("hh", 0)[n]
    weights["table0"] = table.reshape(cfg.vocab, 1, 4 * size)
    w0 = np.zeros((size, 4 * size), np.float32)
    w0[:, rz], w0[:, 3 * size :] = w("hh", 0)[:, rz], w("hh", 0)[:, n]
    weights["w0"] = w0
    for k in range(1, cfg.layers):
        wk = np.zeros((2 * size, 4 * size), np.float32)
        wk[:size, rz], wk[size:, rz] = w("ih", k)[:, rz], w("hh", k)[:, rz]
        wk[:size, n], wk[size:, 3 * size :] = w("ih", k)[:, n], w("hh", k)[:, n]
        weights[f"w{k}"] = wk
        weights[f"b{k}"] = np.concatenate(
            [b("ih", k)[rz] + b("hh", k)[rz], b("ih", k)[n], b("hh", k)[n]]
        )
    weights["w_out"] = arr(model.head.weight.T)
    weights["b_out"] = arr(model.head.bias)
    return weights


def step_graph(model: SegueGRU) -> onnx.ModelProto:
    """The single-step model as an ONNX graph (fp32)."""
    cfg, size = model.config, model.config.hidden
    node = helper.make_node
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(a), name)
        for name, a in _cell_weights(model).items()
    ]
    inits += [
        numpy_helper.from_array(np.array([2 * size, size, size], np.int64), "split_gates"),
        numpy_helper.from_array(np.array([size, size], np.int64), "split_rz"),
        numpy_helper.from_array(np.array([1, cfg.vocab], np.int64), "logits_shape"),
    ]
    hs = [f"h{k}" for k in range(cfg.layers)]
    nodes = (
        [node("Split", ["hidden"], hs, axis=0, num_outputs=cfg.layers)]
        if cfg.layers > 1
        else [node("Identity", ["hidden"], hs)]
    )
    x = None
    for k, h in enumerate(hs):
        if k == 0:
            nodes += [
                node("Gather", ["table0", "token"], ["x_gates0"], axis=0),
                node("MatMul", [h, "w0"], ["h_gates0"]),
                node("Add", ["x_gates0", "h_gates0"], ["pre0"]),
            ]
        else:
            nodes += [
                node("Concat", [x, h], [f"xh{k}"], axis=-1),
                node("MatMul", [f"xh{k}", f"w{k}"], [f"mm{k}"]),
                node("Add", [f"mm{k}", f"b{k}"], [f"pre{k}"]),
            ]
        nodes += [
            node(
                "Split", [f"pre{k}", "split_gates"], [f"rz_pre{k}", f"n_x{k}", f"n_h{k}"], axis=-1
            ),
            node("Sigmoid", [f"rz_pre{k}"], [f"rz{k}"]),
            node("Split", [f"rz{k}", "split_rz"], [f"r{k}", f"z{k}"], axis=-1),
            node("Mul", [f"r{k}", f"n_h{k}"], [f"rn_h{k}"]),
            node("Add", [f"n_x{k}", f"rn_h{k}"], [f"n_pre{k}"]),
            node("Tanh", [f"n_pre{k}"], [f"n{k}"]),
            node("Sub", [h, f"n{k}"], [f"h_minus_n{k}"]),
            node("Mul", [f"z{k}", f"h_minus_n{k}"], [f"z_step{k}"]),
            node("Add", [f"n{k}", f"z_step{k}"], [f"x{k}"]),
        ]
        x = f"x{k}"
    nodes += [
        node("MatMul", [x, "w_out"], ["head"]),
        node("Add", ["head", "b_out"], ["logits3"]),
        node("Reshape", ["logits3", "logits_shape"], ["logits"]),
        node("Concat", [f"x{k}" for k in range(cfg.layers)], ["hidden_out"], axis=0),
    ]
    state = [cfg.layers, 1, size]
    graph = helper.make_graph(
        nodes,
        "segue_gru_step",
        [
            helper.make_tensor_value_info("token", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("hidden", TensorProto.FLOAT, state),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, cfg.vocab]),
            helper.make_tensor_value_info("hidden_out", TensorProto.FLOAT, state),
        ],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = 9  # readable by every onnxruntime Segue supports
    onnx.checker.check_model(proto)
    return proto


def check_against_torch(model: SegueGRU, onnx_path: Path, steps: int = 64, seed: int = 0) -> float:
    """Largest logit difference between the ONNX step graph and torch on a random sequence."""
    tokens = torch.from_numpy(np.random.default_rng(seed).integers(0, model.config.vocab, steps))
    with torch.no_grad():
        expected = model(tokens[None])[0][0].numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    hidden = np.zeros((model.config.layers, 1, model.config.hidden), np.float32)
    error = 0.0
    for i, token in enumerate(tokens.numpy()):
        logits, hidden = session.run(None, {"token": np.array([token]), "hidden": hidden})
        error = max(error, float(np.abs(logits[0] - expected[i]).max()))
    return error


def export_fp32(checkpoint: Path, out_path: Path) -> SegueGRU:
    """Write the single-step fp32 model as one self-contained ONNX file, checked against torch."""
    model = SegueGRU.from_checkpoint(torch.load(checkpoint, weights_only=False)["model"])
    model.eval()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(step_graph(model), str(out_path))
    error = check_against_torch(model, out_path)
    if error > MAX_FP32_ERROR:
        raise RuntimeError(f"the ONNX step graph differs from torch by {error:.2e} in the logits")
    return model


def quantize(fp32_path: Path, int8_path: Path) -> None:
    quantize_dynamic(
        str(fp32_path),
        str(int8_path),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm"],
    )


def _lineage(base: dict | None) -> dict | None:
    """What the manifest keeps of the trainings a run was fine-tuned from."""
    if not base:
        return None
    keys = ("command", "steps", "minutes", "stopped_by", "best_val_nll")
    return {key: base[key] for key in keys} | {"base": _lineage(base.get("base"))}


def manifest(
    model: SegueGRU, int8_path: Path, run_dir: Path, data_dir: Path = DATA_DIR, command: str = ""
) -> dict:
    train_summary = json.loads((run_dir / "train.json").read_text())
    data_summary = json.loads((data_dir / "dataset.json").read_text())
    cfg = model.config
    return {
        "format_version": FORMAT_VERSION,
        "model": int8_path.name,
        "sha256": sha256(int8_path),
        "bytes": int8_path.stat().st_size,
        "architecture": {
            "type": "GRU language model, single step, explicit cell, int8 dynamic quantization",
            "vocab": cfg.vocab,
            "embed": cfg.embed,
            "hidden": cfg.hidden,
            "layers": cfg.layers,
        },
        "tensors": {
            "inputs": {"token": ["int64", [1]], "hidden": ["float32", [cfg.layers, 1, cfg.hidden]]},
            "outputs": {
                "logits": ["float32", [1, cfg.vocab]],
                "hidden_out": ["float32", [cfg.layers, 1, cfg.hidden]],
            },
        },
        "vocabulary": list(VOCAB),
        "prefix_len": PREFIX_LEN,
        "controls": {
            "quadrant": list(QUADRANTS.values()),
            "mode": list(MODES),
            "tempo": list(TEMPOS),
            "tempo_edges_bpm": list(TEMPO_EDGES_BPM),
            "density": list(DENSITIES),
            "density_edges_onsets_per_beat": data_summary["density_edges"],
            "median_density": data_summary["median_density"],
            "meter": list(METERS),
            "parts": list(PARTS),
        },
        "export_command": command or train_summary["command"],
        # Where the checkpoint and its fp32 twin are, for the evaluation's NLL figures.
        "run": str(run_dir.resolve().relative_to(REPO))
        if run_dir.resolve().is_relative_to(REPO)
        else str(run_dir),
        "training": {
            "command": train_summary["command"],
            "steps": train_summary["steps"],
            "minutes": train_summary["minutes"],
            "stopped_by": train_summary["stopped_by"],
            "best_val_nll": train_summary["best_val_nll"],
            "parameters": train_summary["parameters"],
            "config": train_summary["config"],
            "draw_shares": train_summary.get("draw_shares"),
            "opening_on_tonic": train_summary.get("opening_on_tonic"),
            "base": _lineage(train_summary.get("base")),
            "data": data_summary,
        },
    }


def export(
    run_dir: Path, models_dir: Path = MODELS_DIR, data_dir: Path = DATA_DIR, command: str = ""
) -> Path:
    """Export run_dir/best.pt; the fp32 twin stays in run_dir, the int8 model goes to models/.
    `command`: the command line that ran the export, for the manifest (default: training's)."""
    fp32_path = run_dir / "segue-gru-fp32.onnx"
    model = export_fp32(run_dir / "best.pt", fp32_path)
    models_dir.mkdir(parents=True, exist_ok=True)
    int8_path = models_dir / f"{MODEL_NAME}.onnx"
    quantize(fp32_path, int8_path)
    info = manifest(model, int8_path, run_dir, data_dir, command)
    (models_dir / f"{MODEL_NAME}.json").write_text(json.dumps(info, indent=2))
    print(f"exported {int8_path} ({info['bytes'] / 1e6:.2f} MB), fp32 twin {fp32_path}")
    return int8_path
