"""Evaluation of the shipped model → models/EVALUATION.md, models/evaluation.json, MODEL_CARD.md.

- held-out NLL (nats/token) on the test split: torch fp32 on every test window, and the
  ONNX fp32 twin vs the shipped int8 model on the same seeded subset, one step at a time;
- control accuracy on generated loops: for each requested mode, density, mood quadrant and
  part set, the share of loops whose measured attribute matches (engine.train.controls),
  with grammar-only decoding and with the soft scale prior, reported separately;
- pitch-in-scale rate, pitch-class entropy and empty-bar rate (muspy's definitions, in numpy)
  for generated loops beside the same figures on held-out real windows;
- time to write one 8-second loop (tokens → notes) on one core, p50 and p99.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from engine.making.grammar import decode
from engine.making.model import ModelError, ModelGenerator, Sampling
from engine.making.model_files import default_model_path, manifest_path
from engine.making.tokens import PREFIX_LEN, TokenError, bar_steps
from engine.score.music import (
    DENSITIES,
    MODES,
    MOODS,
    PARTS,
    QUADRANTS,
    Instrument,
    LoopSpec,
    Meter,
)
from engine.train import controls as ctl
from engine.train.data import DATA_DIR, WINDOW_BARS, Dataset
from engine.train.evaluation_md import markdown
from engine.train.sources import TEACHER_SOURCE

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RUN = REPO / "runs" / "gru"  # a manifest written before it named its run
SAMPLER = ("temperature", "top_p")
NLL_WINDOWS = 400  # test windows scored step by step through ONNX (fp32 and int8)
# Decoding configurations compared; the last one is what Segue ships (Sampling()).
# Every prior's strength at 0: each float of Sampling but the sampler's own two (a field's
# type is its annotation's text under `from __future__ import annotations`, else the class).
NO_PRIORS = {
    f.name: 0.0 for f in fields(Sampling) if f.type in (float, "float") and f.name not in SAMPLER
}
NO_GUARANTEES = {"density_floor": False, "fill_bars": False}
CONFIGS: dict[str, Sampling] = {
    "model alone": Sampling(**NO_PRIORS, **NO_GUARANTEES),
    "+ soft priors": Sampling(**NO_GUARANTEES),
    "shipped: + floor and full bars": Sampling(),
}
EXAMPLE_MOTIF = REPO / "statemachines" / "motifs" / "hero.mid"
MELODIC_PROGRAMS = {"bass": 33, "pad": 48, "lead": 73}


def onnx_nll(model_path: Path, seqs: list[np.ndarray]) -> float:
    """Per-token NLL of the single-step ONNX model, scored like training (after the prefix)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[1].shape
    total, count = 0.0, 0
    for seq in tqdm(seqs, desc=f"NLL {model_path.name}", unit="window", leave=False):
        hidden = np.zeros(shape, dtype=np.float32)
        for i in range(len(seq) - 1):
            logits, hidden = session.run(
                None, {"token": seq[i : i + 1].astype(np.int64), "hidden": hidden}
            )
            if i + 1 > PREFIX_LEN:
                z = logits[0].astype(np.float64)
                total += float(np.logaddexp.reduce(z) - z[seq[i + 1]])
                count += 1
    return total / count


def torch_nll(seqs: list[np.ndarray], checkpoint: Path) -> float | None:
    if not checkpoint.exists():
        return None
    import torch

    from engine.train.model import SegueGRU
    from engine.train.train import sequence_nll

    torch.set_num_threads(1)
    model = SegueGRU.from_checkpoint(torch.load(checkpoint, weights_only=False)["model"])
    return sequence_nll(model, seqs)[0]


def random_specs(count: int, seed: int) -> list[LoopSpec]:
    """Specs as a designer might write them: mode follows the mood's valence."""
    rng = np.random.default_rng(seed)
    specs = []
    meters = [Meter(4, 4)] * 6 + [Meter(3, 4), Meter(6, 8)]
    for i in range(count):
        mood = list(QUADRANTS.values())[i % 4]
        valence, _ = MOODS[mood]
        mode = "major" if valence > 0 else "minor"
        n_parts = int(rng.integers(1, 5))
        parts = tuple(sorted(rng.choice(PARTS, n_parts, replace=False), key=PARTS.index))
        instruments = tuple(
            (
                p,
                Instrument("standard", 0, True)
                if p == "drums"
                else Instrument(p, MELODIC_PROGRAMS[p]),
            )
            for p in parts
        )
        specs.append(
            LoopSpec(
                state=f"eval{i}",
                mood=mood,
                mode=mode,
                tonic=int(rng.integers(0, 12)),
                tempo_bpm=float(rng.uniform(70, 160)),
                meter=meters[int(rng.integers(0, len(meters)))],
                bars=4,
                instruments=instruments,
                density=DENSITIES[(i // 4) % 3],
                seed=int(rng.integers(0, 2**31)),
            )
        )
    return specs


FAILED = ("mode", "key_mode", "density", "quadrant")


def measure(loop, density_edges, median_density) -> dict:
    spec = loop.spec
    notes = loop.notes
    density = ctl.onset_density(notes, spec.beats)
    mode = ctl.mode_given_tonic(notes, spec.tonic)
    key = ctl.find_key(notes)
    return {
        "mode": mode,
        "key_mode": key[1] if key else None,
        "key_tonic_ok": key is not None and key[0] == spec.tonic % 12,
        "density": ctl.density_bucket(density, density_edges),
        "quadrant": ctl.quadrant(
            mode or spec.mode,
            ctl.mean_melodic_pitch(notes),
            spec.tempo_bpm,
            density,
            median_density,
        ),
        "parts": tuple(p for p in PARTS if any(n.part == p for n in notes)),
        "in_scale": ctl.in_scale_rate(notes, spec.tonic, spec.mode),
        "pc_entropy": ctl.pitch_class_entropy(notes),
        "empty_bars": ctl.empty_bar_rate(notes, spec.bars, spec.beats / spec.bars),
    }


def accuracy(specs, measured, attribute: str, values) -> dict:
    table = {}
    for value in values:
        hits = [
            m[attribute] == value
            for s, m in zip(specs, measured, strict=True)
            if getattr(s, attribute if attribute != "quadrant" else "quadrant") == value
            and m[attribute] is not None
        ]
        table[value] = {"n": len(hits), "accuracy": float(np.mean(hits)) if hits else None}
    all_hits = [
        m[attribute] == getattr(s, attribute)
        for s, m in zip(specs, measured, strict=True)
        if m[attribute] is not None
    ]
    table["all"] = {"n": len(all_hits), "accuracy": float(np.mean(all_hits))}
    return table


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def generated_metrics(generator: ModelGenerator, specs, manifest) -> dict:
    edges = manifest["controls"]["density_edges_onsets_per_beat"]
    median = manifest["controls"]["median_density"]
    loops, failures = [], 0
    measured = []
    for spec in tqdm(specs, desc="generate", unit="loop", leave=False):
        try:
            loop = generator.generate(spec)
        except ModelError:  # the engine would fall back to the rules: a miss for every control
            failures += 1
            measured.append(dict.fromkeys(FAILED, "failed") | {"parts": (), "key_tonic_ok": False})
            continue
        loops.append(loop)
        measured.append(measure(loop, edges, median))
    parts_hits = [s.parts == m["parts"] for s, m in zip(specs, measured, strict=True)]
    by_count = {}
    for k in range(1, 5):
        hits = [h for s, h in zip(specs, parts_hits, strict=True) if len(s.parts) == k]
        by_count[str(k)] = {"n": len(hits), "accuracy": float(np.mean(hits)) if hits else None}
    return {
        "loops": len(loops),
        "failures": failures,
        "mode": accuracy(specs, measured, "mode", MODES),
        "mode_full_key_finding": float(
            np.mean(
                [
                    m["key_mode"] == s.mode
                    for s, m in zip(specs, measured, strict=True)
                    if m["key_mode"]
                ]
            )
        ),
        "tonic_found": float(np.mean([m["key_tonic_ok"] for m in measured if m["key_mode"]])),
        "density": accuracy(specs, measured, "density", DENSITIES),
        "quadrant": accuracy(specs, measured, "quadrant", list(QUADRANTS.values())),
        "parts_exact": {
            "all": {"n": len(parts_hits), "accuracy": float(np.mean(parts_hits))},
            **by_count,
        },
        "in_scale_rate": _mean(m.get("in_scale") for m in measured),
        "pitch_class_entropy": _mean(m.get("pc_entropy") for m in measured),
        "empty_bar_rate": _mean(m.get("empty_bars") for m in measured),
        "notes_per_loop": float(np.mean([len(loop.notes) for loop in loops])),
    }


def real_metrics(seqs: list[np.ndarray]) -> dict:
    """The same figures on held-out real windows (tokens decoded, tonic 0 = key-relative)."""
    in_scale, entropy, empty = [], [], []
    for seq in seqs:
        try:
            controls, notes = decode(seq, tonic=0)
        except TokenError:  # a window cut at MAX_TOKENS
            continue
        in_scale.append(ctl.in_scale_rate(notes, 0, controls.mode))
        entropy.append(ctl.pitch_class_entropy(notes))
        bar_beats = bar_steps(controls.meter) / 4
        empty.append(ctl.empty_bar_rate(notes, WINDOW_BARS, bar_beats))
    return {
        "windows": len(seqs),
        "in_scale_rate": _mean(in_scale),
        "pitch_class_entropy": _mean(entropy),
        "empty_bar_rate": _mean(empty),
    }


def motif_metrics(generator: ModelGenerator, specs: list[LoopSpec], path: Path) -> dict:
    """How much of the example motif's material the lead keeps after stating it
    (`engine.score.motif.development`), beside the same specs written without the motif."""
    from engine.score.motif import development, read_motif

    keys = ("pc_primed", "pc_free", "iv_primed", "iv_free")
    shares: dict[str, list[float]] = {k: [] for k in keys}
    for spec in specs:
        motif = read_motif(path, spec.tonic)
        for label, s in (("primed", replace(spec, motif=motif)), ("free", spec)):
            try:
                kept = development(motif, generator.generate(s).notes)
            except ModelError:
                continue
            if kept is not None:
                shares[f"pc_{label}"].append(kept[0])
                shares[f"iv_{label}"].append(kept[1])
    return {"motif": path.name, "loops": len(specs)} | {k: _mean(v) for k, v in shares.items()}


def timing(generator: ModelGenerator, runs: int = 200, repeats: int = 3) -> dict:
    """Time to write one 8-second loop (120 bpm, 4/4, 4 bars, all parts): tokens → notes.
    Each loop is written `repeats` times and counts with its best time, as in
    benchmarks/bench_model.py (host stalls on a shared machine are not the loop's cost)."""
    specs = random_specs(runs, seed=99)
    specs = [
        replace(
            s,
            tempo_bpm=120.0,
            meter=Meter(4, 4),
            instruments=tuple(
                (
                    p,
                    Instrument("standard", 0, True)
                    if p == "drums"
                    else Instrument(p, MELODIC_PROGRAMS[p]),
                )
                for p in PARTS
            ),
        )
        for s in specs
    ]
    generator.generate(specs[0])  # warm-up
    runs_ms = np.zeros((repeats, len(specs)))
    for r in range(repeats):  # passes over all specs; each loop counts with its best time
        for i, spec in enumerate(specs):
            start = time.perf_counter()
            generator.generate(spec)
            runs_ms[r, i] = (time.perf_counter() - start) * 1e3
    times = runs_ms.min(axis=0)
    tokens = [len(generator.tokens(spec)) for spec in specs]
    return {
        "loops": runs,
        "repeats": repeats,
        "p99_every_run_ms": float(np.percentile(runs_ms, 99)),
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "max_ms": float(np.max(times)),
        "tokens_p50": float(np.percentile(tokens, 50)),
        "tokens_max": int(np.max(tokens)),
    }


def _fp32_carried_over(previous: Path, nll: dict) -> dict:
    """The fp32 figures (torch and the ONNX twin) of the last evaluation of this same model,
    when this machine lacks torch or the twin (they come with a training run): the same int8
    NLL on the same seeded windows, to 0.01 %, says it is the same model."""
    try:
        before = json.loads(previous.read_text())["nll_nats_per_token"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not before.get("int8") or abs(before["int8"] - nll["int8"]) > 1e-4 * nll["int8"]:
        return {}
    carried = {k: before.get(k) for k in ("torch_fp32_all", "torch_fp32_real", "fp32")
               if nll.get(k) is None}  # fmt: skip
    return {**carried, "carried_over": sorted(k for k, v in carried.items() if v is not None)}


def data_figures(model_path: Path, run_dir: Path) -> tuple[dict, dict]:
    """What the test windows say of the model: its NLL, and real music's own statistics."""
    fp32 = run_dir / "segue-gru-fp32.onnx"
    data = Dataset.load(DATA_DIR)
    test = data.sequences("test")
    rng = np.random.default_rng(3)
    picks = sorted(rng.choice(len(test), min(NLL_WINDOWS, len(test)), replace=False))
    subset = [test[i] for i in picks]
    nll = {"test_windows_all": len(test), "onnx_windows": len(subset)}
    nll["torch_fp32_all"] = torch_nll(test, run_dir / "best.pt")
    # Real music alone: the teacher's loops (engine.train.teacher) are easier to predict.
    real = [
        s
        for s, source in zip(test, data.sources_of("test"), strict=True)
        if source != TEACHER_SOURCE
    ]
    nll["test_windows_real"] = len(real)
    nll["torch_fp32_real"] = torch_nll(real, run_dir / "best.pt") if real else None
    nll["int8"] = onnx_nll(model_path, subset)
    nll["fp32"] = onnx_nll(fp32, subset) if fp32.exists() else None
    if None in (nll["torch_fp32_all"], nll["torch_fp32_real"], nll["fp32"]):
        nll.update(_fp32_carried_over(model_path.parent / "evaluation.json", nll))
    if nll["fp32"]:
        nll["int8_vs_fp32_percent"] = 100.0 * (nll["int8"] - nll["fp32"]) / nll["fp32"]
    return nll, real_metrics(real)


def _data_figures_of_last(previous: Path, sha: str, missing: Exception) -> tuple[dict, dict]:
    """With no dataset here, the figures it alone gives (NLL, real music's statistics) from
    the last evaluation of this same file (its SHA-256): the decoding does not change them."""
    try:
        before = json.loads(previous.read_text())
    except (OSError, ValueError):
        raise missing from None
    if before.get("sha256") != sha:
        raise missing
    print(f"no dataset here: NLL and real-music figures from {previous} (sha256 {sha[:16]}…)")
    return before["nll_nats_per_token"] | {"from_last_evaluation": True}, before["real_test"]


def evaluate(model: Path | None = None, loops_per_value: int = 20) -> dict:
    model_path = Path(model) if model else default_model_path()
    models_dir = model_path.parent
    manifest = json.loads(manifest_path(model_path).read_text())
    run_dir = REPO / manifest["run"] if "run" in manifest else DEFAULT_RUN  # the training run
    sha = manifest["sha256"]  # the file's, or ModelGenerator.load refuses it below
    try:
        nll, real_test = data_figures(model_path, run_dir)
    except FileNotFoundError as missing:
        if (DATA_DIR / "dataset.npz").exists():  # a dataset, broken: say so, carry nothing
            raise
        nll, real_test = _data_figures_of_last(models_dir / "evaluation.json", sha, missing)
    specs = random_specs(loops_per_value * 12, seed=2026)
    generated = {}
    for label, sampling in CONFIGS.items():
        generator = ModelGenerator.load(model_path, sampling=sampling)
        generated[label] = {"sampling": asdict(sampling)}
        generated[label].update(generated_metrics(generator, specs, manifest))
        with_lead = [s for s in specs if "lead" in s.parts and s.meter == Meter(4, 4)]
        generated[label]["motif_development"] = motif_metrics(generator, with_lead, EXAMPLE_MOTIF)
    report = {
        "model": model_path.name,
        "bytes": model_path.stat().st_size,
        "sha256": sha,
        "nll_nats_per_token": nll,
        "generated": generated,
        "real_test": real_test,
        "timing_one_core": timing(ModelGenerator.load(model_path)),
        "machine": f"{platform.processor() or platform.machine()}, onnxruntime {ort.__version__}",
    }
    (models_dir / "evaluation.json").write_text(json.dumps(report, indent=2))
    (models_dir / "EVALUATION.md").write_text(markdown(report))
    from engine.train.card import write_card

    write_card(models_dir, manifest, report)
    print(markdown(report))
    return report


def sweep(
    model: Path | None = None,
    grid: dict[str, tuple[float, ...]] | None = None,
    loops: int = 96,
) -> list[dict]:
    """Control accuracy for each prior alone at several strengths, on tuning specs (a seed the
    evaluation never uses), so the shipped defaults are not picked on the evaluation loops."""
    grid = grid or {
        "scale_bias": (0.0, 1.0, 2.0, 3.0),
        "third_bias": (0.5, 1.0, 1.5),
        "density_bias": (1.0, 2.0, 4.0, 6.0),
        "parts_bias": (2.0, 4.0, 6.0, 8.0),
    }
    model_path = Path(model) if model else default_model_path()
    manifest = json.loads(manifest_path(model_path).read_text())
    specs = random_specs(loops, seed=777)
    off = Sampling(**NO_PRIORS)  # the grammar's guarantees stay on
    rows = []
    for name, values in grid.items():
        for value in values:
            sampling = replace(off, **{name: value})
            result = generated_metrics(ModelGenerator.load(model_path, sampling), specs, manifest)
            row = {
                "prior": name,
                "value": value,
                "mode": result["mode"]["all"]["accuracy"],
                "density": result["density"]["all"]["accuracy"],
                "quadrant": result["quadrant"]["all"]["accuracy"],
                "parts": result["parts_exact"]["all"]["accuracy"],
                "in_scale": result["in_scale_rate"],
            }
            rows.append(row)
            print(
                " ".join(
                    f"{k}={v}" if isinstance(v, str) else f"{k}={v:.3f}" for k, v in row.items()
                ),
                flush=True,
            )
    return rows
