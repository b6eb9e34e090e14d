"""Best checkpoint → single-step ONNX (fp32, one file) → int8 by dynamic quantization → models/."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import onnx
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from engine.music import DENSITIES, MODES, PARTS, QUADRANTS
from engine.tokens import METERS, PREFIX_LEN, TEMPO_EDGES_BPM, TEMPOS, VOCAB
from engine.train.data import DATA_DIR
from engine.train.model import GRUStep, SegueGRU

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models"
MODEL_NAME = "segue-gru-int8"
FORMAT_VERSION = 1
INPUTS = ("token", "hidden")
OUTPUTS = ("logits", "hidden_out")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_fp32(checkpoint: Path, out_path: Path) -> SegueGRU:
    """Write the single-step fp32 model as one self-contained ONNX file."""
    model = SegueGRU.from_checkpoint(torch.load(checkpoint, weights_only=False)["model"])
    model.eval()
    step = GRUStep(model).eval()
    cfg = model.config
    token = torch.zeros(1, dtype=torch.int64)
    hidden = torch.zeros(cfg.layers, 1, cfg.hidden)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "step.onnx"
        torch.onnx.export(
            step,
            (token, hidden),
            str(raw),
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            opset_version=18,
            dynamo=True,
        )
        proto = onnx.load(str(raw), load_external_data=True)
    onnx.checker.check_model(proto)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(out_path), save_as_external_data=False)  # ship one file
    return model


def quantize(fp32_path: Path, int8_path: Path) -> None:
    quantize_dynamic(
        str(fp32_path),
        str(int8_path),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm"],
    )


def manifest(model: SegueGRU, int8_path: Path, run_dir: Path, data_dir: Path = DATA_DIR) -> dict:
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
        "training": {
            "command": train_summary["command"],
            "steps": train_summary["steps"],
            "minutes": train_summary["minutes"],
            "stopped_by": train_summary["stopped_by"],
            "best_val_nll": train_summary["best_val_nll"],
            "parameters": train_summary["parameters"],
            "config": train_summary["config"],
            "data": data_summary,
        },
    }


def export(run_dir: Path, models_dir: Path = MODELS_DIR, data_dir: Path = DATA_DIR) -> Path:
    """Export run_dir/best.pt; the fp32 twin stays in run_dir, the int8 model goes to models/."""
    fp32_path = run_dir / "segue-gru-fp32.onnx"
    model = export_fp32(run_dir / "best.pt", fp32_path)
    models_dir.mkdir(parents=True, exist_ok=True)
    int8_path = models_dir / f"{MODEL_NAME}.onnx"
    quantize(fp32_path, int8_path)
    info = manifest(model, int8_path, run_dir, data_dir)
    (models_dir / f"{MODEL_NAME}.json").write_text(json.dumps(info, indent=2))
    print(f"exported {int8_path} ({info['bytes'] / 1e6:.2f} MB), fp32 twin {fp32_path}")
    return int8_path
