"""The shipped int8 model under the loop grammar: loading, checks, determinism, motifs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.generator import ModelError, ModelGenerator, Sampling, default_model_path
from engine.music import PARTS, Instrument, LoopSpec, Meter, Note

PROGRAMS = {"bass": 33, "pad": 48, "lead": 73}


FOUR_FOUR = Meter(4, 4)


def spec(parts=PARTS, meter=FOUR_FOUR, bars=4, seed=0, **kw) -> LoopSpec:
    instruments = tuple(
        (p, Instrument("standard", 0, True) if p == "drums" else Instrument(p, PROGRAMS[p]))
        for p in parts
    )
    base = dict(
        state="test", mood="tense", mode="minor", tonic=9, tempo_bpm=132.0, meter=meter,
        bars=bars, instruments=instruments, density="medium", seed=seed,
    )  # fmt: skip
    base.update(kw)
    return LoopSpec(**base)


@pytest.fixture(scope="module")
def model() -> ModelGenerator:
    return ModelGenerator.load()


def test_shipped_model_is_found_and_small(model: ModelGenerator) -> None:
    assert model.name == "model"
    assert model.path == default_model_path()
    assert model.path.stat().st_size < 8 * 1024 * 1024


@pytest.fixture
def copied(tmp_path: Path) -> Path:
    source = default_model_path()
    target = tmp_path / source.name
    shutil.copy(source, target)
    shutil.copy(source.with_suffix(".json"), target.with_suffix(".json"))
    return target


def _edit_manifest(path: Path, **changes) -> None:
    meta = path.with_suffix(".json")
    manifest = json.loads(meta.read_text())
    manifest.update(changes)
    meta.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.unlink(), "model file not found"),
        (lambda p: p.with_suffix(".json").unlink(), "manifest not found"),
        (lambda p: p.with_suffix(".json").write_text("{nope"), "not valid JSON"),
        (lambda p: _edit_manifest(p, format_version=99), "format version"),
        (lambda p: _edit_manifest(p, vocabulary=["PAD", "BOS"]), "vocabulary"),
        (lambda p: _edit_manifest(p, tensors={"inputs": {"x": 1}, "outputs": {}}), "inputs"),
        (lambda p: p.write_bytes(p.read_bytes()[:-100] + bytes(100)), "does not match"),
    ],
)
def test_load_refuses_damaged_models(copied: Path, damage, message: str) -> None:
    damage(copied)
    with pytest.raises(ModelError, match=message) as info:
        ModelGenerator.load(copied)
    assert "\n" not in str(info.value)


def test_load_refuses_a_corrupt_model_with_a_matching_manifest(copied: Path) -> None:
    import hashlib

    copied.write_bytes(b"this is not an onnx model")
    _edit_manifest(copied, sha256=hashlib.sha256(copied.read_bytes()).hexdigest())
    with pytest.raises(ModelError, match="cannot be loaded"):
        ModelGenerator.load(copied)


CASES = [
    spec(),
    spec(parts=("lead",), density="low", mood="calm", mode="major", tonic=2, tempo_bpm=84.0),
    spec(parts=("bass", "pad"), meter=Meter(3, 4), bars=2, density="high"),
    spec(parts=("drums",), meter=Meter(6, 8), bars=3),
    spec(parts=("drums", "lead"), meter=Meter(2, 2), bars=8, mood="happy", mode="major"),
    spec(parts=("pad", "lead"), meter=Meter(5, 4), bars=2, mood="sad"),
]


@pytest.mark.parametrize(
    "loop_spec", CASES, ids=lambda s: f"{s.meter}x{s.bars}-{'+'.join(s.parts)}"
)
def test_loops_keep_the_grammar(model: ModelGenerator, loop_spec: LoopSpec) -> None:
    for seed in range(3):
        s = replace(loop_spec, seed=seed)
        loop = model.generate(s)
        assert loop.generator == "model" and loop.spec == s and loop.notes
        for note in loop.notes:
            assert note.part in s.parts
            assert 0 <= note.start_beats < s.beats
            assert (note.start_beats * 4) == int(note.start_beats * 4)  # on the 16th grid
            assert note.duration_beats > 0 and 1 <= note.velocity <= 127
            assert 0 <= note.pitch <= 127
            if note.part == "drums":
                assert 27 <= note.pitch <= 87  # GM percussion keys


def test_same_seed_same_loop_other_seed_other_loop(model: ModelGenerator) -> None:
    assert model.generate(spec(seed=5)).notes == model.generate(spec(seed=5)).notes
    assert model.generate(spec(seed=5)).notes != model.generate(spec(seed=6)).notes


def test_melodic_pitches_follow_the_tonic(model: ModelGenerator) -> None:
    """Key-relative tokens: the same seed in another key is the same loop, transposed."""
    in_a = model.generate(spec(parts=("bass", "lead"), tonic=9, seed=2))
    in_c = model.generate(spec(parts=("bass", "lead"), tonic=0, seed=2))
    assert [n.pitch - 9 for n in in_a.notes] == [n.pitch for n in in_c.notes]


def test_generation_is_thread_safe(model: ModelGenerator) -> None:
    specs = [spec(seed=s) for s in range(8)]
    expected = [model.generate(s).notes for s in specs]
    results: dict[int, tuple] = {}

    def work(i: int) -> None:
        results[i] = model.generate(specs[i]).notes

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(specs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(specs))] == expected


@pytest.mark.parametrize(
    ("loop_spec", "message"),
    [
        (spec(meter=Meter(7, 4)), "meter 7/4"),
        (spec(meter=Meter(9, 4)), "meter 9/4"),
        (spec(mood="bored"), "mood 'bored'"),
    ],
)
def test_what_the_model_cannot_write_is_a_model_error(
    model: ModelGenerator, loop_spec: LoopSpec, message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        model.generate(loop_spec)


# A designer's motif in A minor: A C E D C B A (lead), one bar of 4/4.
MOTIF = tuple(
    Note("lead", p, t, d, 96)
    for p, t, d in [
        (69, 0, 0.5), (72, 0.5, 0.5), (76, 1, 1), (74, 2, 0.5), (72, 2.5, 0.5), (71, 3, 0.5),
        (69, 3.5, 0.5),
    ]
)  # fmt: skip


def _lead_after_statement(notes, from_beats: float) -> list[Note]:
    return [n for n in notes if n.part == "lead" and n.start_beats >= from_beats]


def test_motif_is_stated_then_developed(model: ModelGenerator) -> None:
    """The loop opens with the motif, and its later bars keep the motif's pitch content
    more than loops written without it (same seeds, same state)."""
    motif_pcs = {n.pitch % 12 for n in MOTIF}
    primed_share, free_share = [], []
    for seed in range(16):
        base = spec(parts=("bass", "lead"), density="medium", seed=seed)
        primed = model.generate(replace(base, motif=MOTIF))
        free = model.generate(base)
        opening = {(n.pitch, n.start_beats) for n in primed.notes if n.start_beats < 4}
        assert {(n.pitch, n.start_beats) for n in MOTIF} <= opening  # the motif is stated
        for loop, shares in ((primed, primed_share), (free, free_share)):
            later = _lead_after_statement(loop.notes, 4.0)
            if later:
                shares.append(np.mean([n.pitch % 12 in motif_pcs for n in later]))
    assert len(primed_share) >= 12
    assert np.mean(primed_share) > np.mean(free_share) + 0.05
    assert np.mean(primed_share) > 0.75


def test_daemon_path_imports_neither_torch_nor_music21() -> None:
    code = (
        "import sys, engine.generator, engine.tokens, engine.generate_cmd; "
        "print(sorted(m for m in ('torch', 'music21') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_generator_is_the_only_importer_of_onnxruntime() -> None:
    engine = Path(__file__).resolve().parents[1] / "engine"
    importers = {
        p.relative_to(engine).as_posix()
        for p in engine.rglob("*.py")
        if "import onnxruntime" in p.read_text() or "from onnxruntime" in p.read_text()
    }
    assert {p for p in importers if not p.startswith("train/")} == {"generator.py"}


def test_density_requests_order_the_loops(model: ModelGenerator) -> None:
    def onsets_per_beat(density: str) -> float:
        rates = []
        for seed in range(8):
            loop = model.generate(spec(parts=("drums", "bass", "lead"), density=density, seed=seed))
            rates.append(len({n.start_beats for n in loop.notes}) / loop.spec.beats)
        return float(np.mean(rates))

    low, medium, high = (onsets_per_beat(d) for d in ("low", "medium", "high"))
    assert low < 1.5 <= medium < 3.0 <= high


def test_priors_off_is_the_model_alone() -> None:
    plain = ModelGenerator.load(sampling=Sampling(scale_bias=0.0, density_bias=0.0, parts_bias=0.0))
    shipped = ModelGenerator.load()
    s = spec(seed=11)
    assert plain.generate(s).notes != shipped.generate(s).notes
    assert plain.generate(s).notes == plain.generate(s).notes
