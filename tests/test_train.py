"""Training pipeline: the torch-free parts (WAD lumps, part assignment, splits, key finding)
always run; the smoke run real MIDI (Freedoom lumps) → dataset → GRU → ONNX int8 → loop needs
the `train` extra (torch)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.making.grammar import decode, with_chords
from engine.making.model import ModelGenerator
from engine.making.tokens import PREFIX_LEN, VOCAB, Controls, encode, opens_on_tonic
from engine.score.music import Instrument, LoopSpec, Meter, Note
from engine.train import controls as ctl
from engine.train.data import Dataset, assign_parts, build, split_of
from engine.train.sources import SOURCE_SHARE, corpus_files, draw_weights
from engine.train.wad import WadError, midi_lumps

WAD = Path("/usr/share/games/doom/freedoom2.wad")
needs_wad = pytest.mark.skipif(not WAD.exists(), reason="Debian package freedoom not installed")


@needs_wad
def test_wad_lumps_are_standard_midi() -> None:
    lumps = midi_lumps(WAD)
    assert len(lumps) > 20
    assert all(name.startswith("D_") and body[:4] == b"MThd" for name, body in lumps.items())


def test_wad_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "x.wad"
    path.write_bytes(b"not a wad at all")
    with pytest.raises(WadError):
        midi_lumps(path)


def test_the_corpus_gives_multipart_works_and_leaves_out_reserved_encodings() -> None:
    files = corpus_files()
    chamber = [path for path, source, _ in files if source == "classical_chamber"]
    assert sum("/beethoven/" in p for p in chamber) >= 20  # the string quartets
    assert any("/haydn/" in p for p in chamber) and any("/mozart/" in p for p in chamber)
    for reserved in ("/palestrina/", "/monteverdi/", "/trecento/", "/essenFolksong/", "/webern/"):
        assert not any(reserved in path for path, _, _ in files), reserved
    assert not any(p.endswith(".rntxt") for p in chamber)  # analyses, not music
    names = [(source, name) for _, source, name in files]
    assert len(set(names)) == len(names)  # a piece's id, hence its split, is its own
    assert sum(
        split_of(f"classical_chamber/{n}#0") == "train"
        for s, n in names
        if s == "classical_chamber"
    ) < 0.95 * len(chamber)


def test_each_source_is_drawn_by_its_share_not_its_size() -> None:
    sources = np.array(["ryans_mammoth"] * 900 + ["freedoom"] * 100 + ["user:studio"] * 10)
    weights = draw_weights(sources)
    drawn = {name: weights[sources == name].sum() for name in np.unique(sources)}
    total = SOURCE_SHARE["ryans_mammoth"] + SOURCE_SHARE["freedoom"] + 0.25
    assert drawn["ryans_mammoth"] == pytest.approx(SOURCE_SHARE["ryans_mammoth"] / total)
    assert drawn["freedoom"] == pytest.approx(SOURCE_SHARE["freedoom"] / total)
    assert drawn["freedoom"] > drawn["ryans_mammoth"]  # a tenth of the windows, most draws
    assert weights.sum() == pytest.approx(1.0)


def test_a_window_that_opens_on_the_tonic_chord_is_drawn_more_within_its_source() -> None:
    sources = np.array(["freedoom"] * 100 + ["ryans_mammoth"] * 300)
    home = np.arange(400) % 4 == 0  # a quarter of each source opens on the tonic chord
    plain, weighted = draw_weights(sources), draw_weights(sources, home, home_weight=3.0)
    for name in ("freedoom", "ryans_mammoth"):  # every source keeps its share ...
        assert weighted[sources == name].sum() == pytest.approx(plain[sources == name].sum())
    # ... and within it a window at home is drawn three times as often as one away
    assert weighted[0] == pytest.approx(3 * weighted[1])
    assert weighted[home].sum() == pytest.approx(0.5)


def test_a_window_of_more_parts_is_drawn_more_within_its_source() -> None:
    sources = np.array(["freedoom"] * 4 + ["ryans_mammoth"] * 4)
    parts = np.array([1, 2, 3, 4, 1, 1, 1, 1])
    plain, weighted = draw_weights(sources), draw_weights(sources, parts=parts, parts_weight=2.0)
    for name in ("freedoom", "ryans_mammoth"):  # every source keeps its share ...
        assert weighted[sources == name].sum() == pytest.approx(plain[sources == name].sum())
    # ... a four-part window is drawn 2^3 times as often as a one-part one of its source
    assert weighted[3] == pytest.approx(8 * weighted[0])
    assert weighted[4] == pytest.approx(plain[4])  # a source of one-line tunes is unchanged


def test_a_sequence_opens_on_the_tonic_when_its_first_chord_is_the_tonic_triad() -> None:
    controls = Controls("calm", "minor", "slow", "low", "4/4", ("pad",))
    pad = [Note("pad", 57 + step, 0.0, 4.0, 80) for step in (0, 3, 7)]  # A C E in A minor
    on_tonic = with_chords(encode(pad, controls, 1, tonic=9))
    on_four = with_chords(encode([replace(n, pitch=n.pitch + 5) for n in pad], controls, 1, 9))
    assert opens_on_tonic(on_tonic) and not opens_on_tonic(on_four)
    assert not opens_on_tonic(with_chords(encode([], controls, 1, tonic=9)))  # an empty bar


@pytest.mark.parametrize(
    ("mean_pitches", "parts"),
    [
        ([60], ["lead"]),
        ([40, 70], ["bass", "lead"]),
        ([70, 40, 55], ["lead", "bass", "pad"]),
        ([40, 50, 60, 72], ["bass", "pad", "pad", "lead"]),
    ],
)
def test_voices_map_to_parts_by_register(mean_pitches: list[int], parts: list[str]) -> None:
    voices = [[(p, 0.0, 1.0, 80)] for p in mean_pitches]
    assert assign_parts(voices) == parts


def test_split_is_by_piece_and_stable() -> None:
    splits = [split_of(f"piece{i}") for i in range(2000)]
    assert splits == [split_of(f"piece{i}") for i in range(2000)]
    shares = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert 0.75 < shares["train"] < 0.85 and 0.07 < shares["test"] < 0.13


@pytest.mark.parametrize(
    ("pitches", "key"),
    [
        ([60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60], (0, "major")),
        ([57, 59, 60, 62, 64, 65, 68, 69, 64, 60, 57], (9, "minor")),
        ([62, 64, 66, 67, 69, 71, 73, 74, 69, 66, 62], (2, "major")),
    ],
)
def test_key_finding(pitches: list[int], key: tuple[int, str]) -> None:
    from engine.score.music import Note

    notes = [
        Note("lead", p, i * 0.5, 0.5 if p % 12 != key[0] else 2.0, 80)
        for i, p in enumerate(pitches)
    ]
    assert ctl.find_key(notes) == key
    assert ctl.mode_given_tonic(notes, key[0]) == key[1]


def test_key_finding_hears_the_bass() -> None:
    """The bass counts twice: a held F under a C-major tune moves the key to F as a bass, not
    as a pad note."""
    from engine.score.music import Note

    tune = [
        Note("lead", p, i * 0.5, 0.5, 80)
        for i, p in enumerate([72, 76, 79, 72, 74, 76, 77, 79] * 2)
    ]
    assert ctl.find_key(tune) == (0, "major")
    assert ctl.find_key([*tune, Note("pad", 41, 0.0, 2.0, 80)]) == (0, "major")
    assert ctl.find_key([*tune, Note("bass", 41, 0.0, 2.0, 80)]) == (5, "major")


needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="the train extra (torch) is not installed"
)


@needs_torch
def test_validation_weighs_each_window_as_training_draws_it() -> None:
    import torch

    from engine.train.model import ModelConfig, SegueGRU
    from engine.train.train import sequence_nll

    torch.manual_seed(0)
    model = SegueGRU(ModelConfig(len(VOCAB), 8, 8, 1, 0.0))
    controls = Controls("calm", "major", "slow", "low", "4/4", ("lead",))
    seqs = [np.asarray(with_chords(encode([Note("lead", 60 + k, b, 1.0, 80) for b in range(4)],
                                          controls, 1, tonic=0)))
            for k in (0, 7)]  # fmt: skip
    alone = [sequence_nll(model, [s])[0] for s in seqs]
    assert sequence_nll(model, seqs, weights=np.array([1.0, 0.0]))[0] == pytest.approx(alone[0])
    both = sequence_nll(model, seqs)[0]  # tokens alike: the plain mean of the two
    leaning = sequence_nll(model, seqs, weights=np.array([1.0, 3.0]))[0]
    assert abs(leaning - alone[1]) < abs(both - alone[1])


@needs_wad
@needs_torch
def test_smoke_train_export_generate(tmp_path: Path) -> None:
    from dataclasses import replace

    import torch

    from engine.making.model_files import ModelError
    from engine.train.card import _commands, _lineage
    from engine.train.export import export
    from engine.train.train import TrainConfig, train

    midi_dir = tmp_path / "studio"
    midi_dir.mkdir()
    for name, body in sorted(midi_lumps(WAD).items())[:8]:
        (midi_dir / f"{name}.mid").write_bytes(body)
    data_dir = tmp_path / "data"
    summary = build([midi_dir], out_dir=data_dir, workers=1, builtin_sources=False)
    assert summary["sources"][f"user:{midi_dir}"]["pieces"] == 8
    dataset = Dataset.load(data_dir)
    seq = dataset.sequences("train")[0]
    decode(seq, tonic=0)  # cached sequences obey the grammar (unless cut at MAX_TOKENS)

    # Ten steps, however busy the host (the time budget is only a ceiling here).
    config = TrainConfig(
        hidden=32, embed=16, batch=4, max_len=96, minutes=10, max_steps=10, eval_every=5,
        val_limit=8,
    )  # fmt: skip
    run_dir = tmp_path / "run"
    best = train(config, run_dir, command="test", data_dir=data_dir)
    history = json.loads((run_dir / "train.json").read_text())
    assert best.exists() and history["steps"] == 10 and np.isfinite(history["best_val_nll"])
    assert torch.load(run_dir / "last.pt", weights_only=False)["step"] == 10  # as training left it
    # A checkpoint of another vocabulary (before the harmony tokens: 270) is refused in a line.
    old = torch.load(best, weights_only=False)
    old["model"]["config"]["vocab"] = 270
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(ModelError, match="vocabulary of 270 tokens"):
        train(replace(config, init=tmp_path / "old.pt"), tmp_path / "run2", data_dir=data_dir)

    # Fine-tuned from that checkpoint: the manifest, hence the card, keeps what trained it.
    tuned_dir = tmp_path / "tuned"
    train(replace(config, init=best, max_steps=2), tuned_dir, command="tune", data_dir=data_dir)

    models_dir = tmp_path / "models"
    model_path = export(tuned_dir, models_dir=models_dir, data_dir=data_dir)
    assert not list(models_dir.glob("*.data")), "the model must be one file"
    manifest = json.loads(model_path.with_suffix(".json").read_text())
    assert manifest["vocabulary"] == list(VOCAB) and manifest["prefix_len"] == PREFIX_LEN
    training = manifest["training"]
    assert training["command"] == "tune" and training["base"]["command"] == "test"
    assert _commands(training["base"]) == ["test"] and "`test` trained" in _lineage(training)[0]

    generator = ModelGenerator.load(model_path)
    spec = LoopSpec(
        state="smoke", mood="tense", mode="minor", tonic=9, tempo_bpm=140.0, meter=Meter(4, 4),
        bars=2,
        instruments=(("drums", Instrument("power", 16, True)), ("bass", Instrument("b", 34))),
        density="medium", seed=3,
    )  # fmt: skip
    # The grammar holds even an untrained model to a loop with no empty bar: it must write one.
    loop = generator.generate(spec)
    assert loop.notes and loop.generator == "model"
    assert all(0 <= n.start_beats < spec.beats and n.part in spec.parts for n in loop.notes)
    bar_beats = spec.beats / spec.bars
    assert {int(n.start_beats // bar_beats) for n in loop.notes} == set(range(spec.bars))


@pytest.mark.parametrize(
    "before,now,carried",
    [
        (
            {"int8": 1.5371, "fp32": 1.5360, "torch_fp32_all": 1.4893, "torch_fp32_real": 1.6},
            1.5372,
            True,
        ),  # the same model
        (
            {"int8": 1.6000, "fp32": 1.5360, "torch_fp32_all": 1.4893, "torch_fp32_real": 1.6},
            1.5372,
            False,
        ),  # another
        (None, 1.5372, False),  # no earlier evaluation
    ],
)
def test_fp32_figures_carry_over_only_for_the_same_model(tmp_path: Path, before, now, carried):
    from engine.train.evaluate import _fp32_carried_over

    previous = tmp_path / "evaluation.json"
    if before is not None:
        previous.write_text(json.dumps({"nll_nats_per_token": before}))
    nll = {"int8": now, "fp32": None, "torch_fp32_all": None, "torch_fp32_real": None}
    got = _fp32_carried_over(previous, nll)
    if carried:
        assert got == {"fp32": 1.5360, "torch_fp32_all": 1.4893, "torch_fp32_real": 1.6,
                       "carried_over": ["fp32", "torch_fp32_all", "torch_fp32_real"]}  # fmt: skip
    else:
        assert got == {}


@pytest.mark.parametrize("sha,carried", [("ab" * 32, True), ("cd" * 32, False), (None, False)])
def test_with_no_dataset_the_nll_comes_only_from_the_same_file(tmp_path: Path, sha, carried):
    """`evaluate` with no dataset here re-measures the decoding and takes the NLL and the real
    windows' figures from the last evaluation only if it evaluated these very bytes."""
    from engine.train.evaluate import _data_figures_of_last

    previous = tmp_path / "evaluation.json"
    if sha is not None:
        before = {"sha256": sha, "nll_nats_per_token": {"int8": 1.16}, "real_test": {"w": 3}}
        previous.write_text(json.dumps(before))
    missing = FileNotFoundError("data/dataset.npz missing")
    if not carried:
        with pytest.raises(FileNotFoundError, match="dataset.npz missing"):
            _data_figures_of_last(previous, "ab" * 32, missing)
        return
    nll, real = _data_figures_of_last(previous, "ab" * 32, missing)
    assert nll == {"int8": 1.16, "from_last_evaluation": True} and real == {"w": 3}


def test_a_broken_dataset_is_an_error_never_a_carry_over(tmp_path: Path, monkeypatch) -> None:
    """Only a dataset that is absent lets the NLL come from the last evaluation: one that is
    here but broken (its dataset.json missing) stops `evaluate` with the error."""
    import shutil

    import engine.train.evaluate as ev
    from engine.making.model_files import default_model_path, manifest_path

    shipped = default_model_path()
    models = tmp_path / "models"
    models.mkdir()
    for f in (shipped, manifest_path(shipped), shipped.parent / "evaluation.json"):
        shutil.copy(f, models / f.name)
    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "dataset.npz", tokens=np.zeros(1, np.int16), offsets=np.array([0, 1]),
             split=np.array(["train"]))  # fmt: skip
    monkeypatch.setattr(ev, "DATA_DIR", data)
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        ev.evaluate(models / shipped.name)


def test_the_shipped_decoding_teaches_as_music_read_from_its_notes(tmp_path: Path) -> None:
    """Teacher loops go through the data build like any music: one 4-bar window a loop, its
    parts as the decoding wrote them (a MIDI round trip would rename them by register), its
    mode as heard; the teacher is recorded by hash, and its licence is Segue's own."""
    import hashlib

    from engine.making.model_files import default_model_path
    from engine.making.tokens import controls_of
    from engine.train import teacher
    from engine.train.evaluate import random_specs
    from engine.train.sources import TEACHER_SOURCE

    loops = 12
    summary = build(
        [], out_dir=tmp_path, workers=1, builtin_sources=False, teacher=teacher.Teacher(loops=loops)
    )
    source = summary["sources"][TEACHER_SOURCE]
    assert source["pieces"] == source["windows"] == loops
    assert "MIT" in source["licence"]
    shipped = hashlib.sha256(default_model_path().read_bytes()).hexdigest()
    assert summary["teacher_sha256"] == shipped
    cached = np.load(tmp_path / "dataset.npz")
    generator = ModelGenerator.load(None)
    for i, spec in enumerate(random_specs(loops, teacher.SEED)):
        (w,) = np.flatnonzero(cached["piece"] == f"{TEACHER_SOURCE}/{i}")
        controls = controls_of(cached["tokens"][cached["offsets"][w] : cached["offsets"][w + 1]])
        notes = generator.generate(spec).notes
        assert controls.meter == str(spec.meter)
        assert controls.parts == tuple(
            p for p, _ in spec.instruments if any(n.part == p for n in notes)
        )
        assert controls.mode == (ctl.find_key(list(notes)) or (0, "major"))[1]  # drums: none
