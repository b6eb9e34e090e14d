"""The model's files: where the shipped model is, and the manifest beside it that says which
vocabulary, controls and tensors it was exported with (checked before a model is used)."""

from __future__ import annotations

from pathlib import Path

from engine.making.tokens import PREFIX_LEN, VOCAB
from engine.score.music import PARTS

MODEL_FILE = "segue-gru-int8.onnx"
FORMAT_VERSION = 1
INPUTS = ("token", "hidden")
OUTPUTS = ("logits", "hidden_out")


class ModelError(Exception):
    """The model cannot be loaded or could not write a loop (one line a user can read)."""


def default_model_path() -> Path:
    """The shipped model: packaged beside the engine, or in the repository's models/."""
    candidates = (
        Path(__file__).resolve().parents[1] / "models" / MODEL_FILE,
        Path(__file__).resolve().parents[2] / "models" / MODEL_FILE,
    )
    for path in candidates:
        if path.exists():
            return path
    return candidates[-1]


def manifest_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def check_manifest(manifest: dict, model_path: Path) -> None:
    def fail(why: str) -> None:
        raise ModelError(f"model manifest {manifest_path(model_path).name} {why}")

    if manifest.get("format_version") != FORMAT_VERSION:
        fail(f"has format version {manifest.get('format_version')}, expected {FORMAT_VERSION}")
    if tuple(manifest.get("vocabulary", ())) != VOCAB:
        fail("has a vocabulary that differs from this version of Segue")
    if manifest.get("prefix_len") != PREFIX_LEN:
        fail("has a different control prefix")
    tensors = manifest.get("tensors", {})
    if tuple(tensors.get("inputs", {})) != INPUTS:
        fail(f"names inputs {list(tensors.get('inputs', {}))}, expected {list(INPUTS)}")
    if tuple(tensors.get("outputs", {})) != OUTPUTS:
        fail(f"names outputs {list(tensors.get('outputs', {}))}")
    if tuple(manifest.get("controls", {}).get("parts", ())) != PARTS:
        fail("has different parts")
