"""The shipped int8 model under the loop grammar: loading, checks, determinism, motifs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from engine.making.model import ModelError, ModelGenerator, default_model_path
from engine.making.priors import (
    Sampling,
    chord_mask,
    chord_plan,
    pulse_steps,
    skipped_pulses,
    sustain_pad,
    tones_row,
)
from engine.making.tokens import BAR, CHORD0, EOS, NOTE0, POS0, REL_PITCH_LOW, chord_token
from engine.score.graph import loop_spec
from engine.score.load import load_graph
from engine.score.motif import development
from engine.score.music import PARTS, Instrument, LoopSpec, Meter, Note

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


EXAMPLE_GRAPH = Path(__file__).resolve().parents[1] / "statemachines" / "game.yaml"


def test_the_example_motif_is_stated_with_its_accompaniment(model: ModelGenerator) -> None:
    """Combat's motif (motifs/hero.mid) opens the loop note for note in the lead, the lead
    plays nothing else until the motif ends, and the other parts play around it."""
    graph = load_graph(EXAMPLE_GRAPH)
    for seed in range(4):
        spec = loop_spec(graph, "combat", seed)
        assert spec.motif, "the example graph's combat state has a motif"
        loop = model.generate(spec)
        end = max(n.start_beats for n in spec.motif)
        lead = {(n.pitch, n.start_beats) for n in loop.notes if n.part == "lead"}
        assert {(n.pitch, n.start_beats) for n in spec.motif} == {
            (p, t) for p, t in lead if t <= end
        }
        others = {n.part for n in loop.notes if n.part != "lead" and n.start_beats <= end}
        assert others == set(spec.parts) - {"lead"}


def test_the_example_motif_is_developed(model: ModelGenerator) -> None:
    """After the statement, combat's lead keeps the motif's pitch classes and moves by its
    intervals (or their inversions) far more than the same loops written without it."""
    graph = load_graph(EXAMPLE_GRAPH)
    shares = {"pc_primed": [], "pc_free": [], "iv_primed": [], "iv_free": []}
    for seed in range(12):
        spec = loop_spec(graph, "combat", seed)
        for label, s in (("primed", spec), ("free", replace(spec, motif=()))):
            kept = development(spec.motif, model.generate(s).notes)
            if kept is not None:
                shares[f"pc_{label}"].append(kept[0])
                shares[f"iv_{label}"].append(kept[1])
    assert min(len(v) for v in shares.values()) >= 8
    mean = {k: float(np.mean(v)) for k, v in shares.items()}
    # The motif spans five of A minor's seven pitch classes, so free loops share most of them
    # too; its intervals are the sharper evidence.
    assert mean["pc_primed"] > max(0.85, mean["pc_free"]), mean
    # Measured 2026-12-01 (shipped model, 12 seeds): 0.64 against 0.42 free; without the
    # development prior the primed loops keep 0.22 (the test then fails).
    assert mean["iv_primed"] > max(0.5, mean["iv_free"] + 0.15), mean


@pytest.mark.parametrize(
    "parts", [("lead",), ("bass", "pad"), ("drums", "bass", "pad", "lead")], ids="+".join
)
@pytest.mark.parametrize("meter", [FOUR_FOUR, Meter(6, 8)], ids=str)
def test_requested_density_is_reached_and_no_bar_is_empty(
    model: ModelGenerator, parts: tuple[str, ...], meter: Meter
) -> None:
    edges = model.manifest["controls"]["density_edges_onsets_per_beat"]
    # Each request measures in its own bucket: low below the first edge (and near its target,
    # not just a note a bar), medium from the first edge, high from the second.
    low_floor = 0.75  # onsets per beat: three quarters of the low target (one a beat)
    bucket = {"low": (low_floor, edges[0]), "medium": (edges[0], np.inf),
              "high": (edges[1], np.inf)}  # fmt: skip
    for density, (lowest, below) in bucket.items():
        for seed in range(3):
            s = spec(parts=parts, meter=meter, density=density, seed=seed)
            notes = model.generate(s).notes
            assert lowest <= len({n.start_beats for n in notes}) / s.beats < below, density
            bar_beats = s.beats / s.bars
            assert {int(n.start_beats // bar_beats) for n in notes} == set(range(s.bars))


def test_requested_parts_keep_playing(model: ModelGenerator) -> None:
    """The parts prior: a requested part rarely rests a whole bar (combat's lead would
    otherwise leave the melody to the pad after its first bars)."""
    graph = load_graph(EXAMPLE_GRAPH)
    heard = []
    for seed in range(6):
        s = replace(loop_spec(graph, "combat", seed), motif=())
        bar_beats = s.beats / s.bars
        notes = model.generate(s).notes
        for part in s.parts:
            bars = {int(n.start_beats // bar_beats) for n in notes if n.part == part}
            heard.append(len(bars) / s.bars)
    assert np.mean(heard) > 0.85


def test_daemon_path_imports_neither_torch_nor_music21() -> None:
    code = (
        "import sys, engine.making.model, engine.making.tokens, engine.tools.generate; "
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
    assert {p for p in importers if not p.startswith("train/")} == {"making/model.py"}


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
    from engine.train.evaluate import NO_GUARANTEES, NO_PRIORS

    assert {"scale_bias", "harmony_bias", "step_bias", "groove_bias"} <= set(NO_PRIORS)
    plain = ModelGenerator.load(sampling=Sampling(**NO_PRIORS, **NO_GUARANTEES))
    shipped = ModelGenerator.load()
    s = spec(seed=11)
    assert plain.generate(s).notes != shipped.generate(s).notes
    assert plain.generate(s).notes == plain.generate(s).notes


def test_the_pad_holds_until_its_next_chord_and_no_longer() -> None:
    notes = [
        Note("pad", 60, 0.0, 0.5, 80), Note("pad", 64, 0.0, 6.0, 80),  # a chord
        Note("lead", 72, 1.0, 0.5, 90),
        Note("pad", 67, 2.0, 0.25, 80),  # one note moving over the held chord
        Note("pad", 62, 3.0, 4.0, 80), Note("pad", 65, 3.0, 0.5, 80),  # the next chord
    ]  # fmt: skip
    held = sustain_pad(notes, loop_beats=8.0)
    # The first chord lasts to the next chord (beat 3), cut there, not held on to beat 6;
    # the single note lasts to beat 3 too; the last chord wraps round to beat 0.
    assert [n.duration_beats for n in held] == [3.0, 3.0, 0.5, 1.0, 5.0, 5.0]


@pytest.mark.parametrize(
    "meter,pulse,current,token,skipped",
    [
        (FOUR_FOUR, 4, -1, POS0 + 0, 0),  # the bar's first 16th: nothing skipped
        (FOUR_FOUR, 4, -1, POS0 + 4, 1),  # the first beat left empty
        (FOUR_FOUR, 4, -1, BAR, 4),  # an empty bar
        (FOUR_FOUR, 4, 5, POS0 + 7, 0),  # within beat 2
        (FOUR_FOUR, 4, 5, POS0 + 8, 0),  # beat 3's first 16th
        (FOUR_FOUR, 4, 5, POS0 + 12, 1),  # beat 3 left empty
        (FOUR_FOUR, 4, 5, EOS, 2),  # beats 3 and 4
        (FOUR_FOUR, 4, 13, BAR, 0),  # on the last beat already
        (Meter(6, 8), 6, 2, POS0 + 6, 0),  # 6/8 pulses in dotted quarters
        (Meter(6, 8), 6, 2, BAR, 1),
        (Meter(3, 4), 4, -1, BAR, 3),
    ],
)
def testskipped_pulses(meter: Meter, pulse: int, current: int, token: int, skipped: int) -> None:
    steps = 16 * meter.beats_per_bar // meter.beat_unit
    assert pulse_steps(meter) == pulse
    assert skipped_pulses(steps, pulse)[current + 1, token] == skipped


def _pad_chords_roots_and_empty_pulses(model: ModelGenerator) -> tuple[float, float, float]:
    """Over low-density loops in A minor 4/4 and D major 6/8: the share of the pad's onsets
    that start 2+ notes, of the bass's downbeats whose lowest note is the root of the bar's
    chord in the loop's plan, and of pulses with no onset at all."""
    chords, roots, empty = [], [], []
    for seed in range(16):
        for meter, mode, tonic_pc in ((FOUR_FOUR, "minor", 9), (Meter(6, 8), "major", 2)):
            s = spec(meter=meter, seed=seed, density="low", mode=mode, tonic=tonic_pc)
            notes = model.generate(s).notes
            pad: dict[float, int] = {}
            for n in notes:
                if n.part == "pad":
                    pad[n.start_beats] = pad.get(n.start_beats, 0) + 1
            chords += [count >= 2 for count in pad.values()]
            bar_beats = s.beats / s.bars
            for bar, (root, _) in enumerate(chord_plan(mode, s.bars, s.seed)):
                here = [
                    n.pitch for n in notes if n.part == "bass" and n.start_beats == bar * bar_beats
                ]
                if here:
                    roots.append((min(here) - s.tonic - root) % 12 == 0)
            pulse = pulse_steps(meter) / 4  # in quarter notes
            heard = {int(n.start_beats // pulse) for n in notes}
            empty.append(1 - len(heard) / round(s.beats / pulse))
    assert len(roots) >= 12
    return float(np.mean(chords)), float(np.mean(roots)), float(np.mean(empty))


def test_the_priors_give_pad_chords_a_chord_plan_and_a_pulse(model: ModelGenerator) -> None:
    """Each prior does what it names: without it, its own measure falls."""
    chords, roots, empty = _pad_chords_roots_and_empty_pulses(model)
    assert chords >= 0.6 and roots >= 0.8
    without = {
        name: _pad_chords_roots_and_empty_pulses(
            ModelGenerator.load(sampling=Sampling(**{name: 0.0}))
        )
        for name in ("pad_chord_bias", "harmony_bias", "pulse_bias")
    }
    # The models taught by the decoding voice chords and keep the pulse much more on their
    # own: without the pad prior the pad's onsets are chords 76 % of the time (the model
    # before distillation: under 60 %), and without the pulse prior 22 % of low loops' pulses
    # are empty against 18 % with it (measured on the second taught model, 32 loops).
    assert without["pad_chord_bias"][0] < chords - 0.1
    assert without["harmony_bias"][1] < roots - 0.2
    assert without["pulse_bias"][2] > empty + 0.025


def _repeats(model: ModelGenerator) -> tuple[float, float]:
    """Over drum-led loops in 4/4 and 6/8: how much each bar's onsets, and its drums, repeat
    the bar before or the one before that (engine/train/listening.py's measure)."""
    from engine.train.listening import repetition

    rhythm, drums = [], []
    for seed in range(6):
        for meter in (FOUR_FOUR, Meter(6, 8)):
            s = spec(parts=("drums", "bass", "pad"), meter=meter, seed=seed, density="medium")
            notes = model.generate(s).notes
            bar = s.beats / s.bars
            rhythm.append(repetition(notes, bar, s.bars, by_pitch=False))
            drums.append(repetition([n for n in notes if n.part == "drums"], bar, s.bars, True))
    assert None not in rhythm and None not in drums  # every loop plays its drums
    return float(np.mean(rhythm)), float(np.mean(drums))


def test_the_groove_prior_favours_the_bar_befores_onsets_drums_and_keys() -> None:
    """Exactly which tokens gain the groove's bias, choice by choice, in bars 1 and 2."""
    from engine.making.grammar import Grammar
    from engine.making.priors import Groove
    from engine.making.tokens import DV0, INDEX, INST0

    grammar = Grammar("4/4", 3, ("drums", "bass"))
    groove = Groove(4.0, drums=True, steps_in_bar=16)
    kick, hat, bass_note = INDEX["DRUM_36"], INDEX["DRUM_42"], INDEX["NOTE_36"]
    drums, bass = INST0 + PARTS.index("drums"), INST0 + PARTS.index("bass")

    def play(*tokens):
        for t in tokens:
            grammar.advance(t)

    play(BAR)
    assert len(groove.tokens(grammar)) == 0  # bar 1 has no bar before it
    play(POS0, drums, kick, DV0, hat, DV0, POS0 + 8, bass, bass_note, DV0, BAR)
    # Bar 2: the next onset leans to 0 and 8; at 0, the drums; there, the kick and the hat.
    assert list(groove.tokens(grammar)) == [POS0, POS0 + 8]
    play(POS0)
    assert list(groove.tokens(grammar)) == [drums]
    play(drums)
    assert list(groove.tokens(grammar)) == [kick, hat]
    play(kick, DV0)  # after the kick: the hat here (the kick too, which the grammar no
    assert sorted(groove.tokens(grammar)) == sorted([POS0 + 8, kick, hat])  # longer allows), or 8
    play(POS0 + 4)  # off the template: no part is favoured here
    assert len(groove.tokens(grammar)) == 0
    play(bass, bass_note, DV0, BAR)
    # Bar 3 follows bar 2 (onsets 0 and 4, the kick alone at 0), not bar 1.
    assert list(groove.tokens(grammar)) == [POS0, POS0 + 4]
    play(POS0, drums)
    assert list(groove.tokens(grammar)) == [kick]


def test_the_groove_prior_makes_bars_repeat_the_one_before(model: ModelGenerator) -> None:
    rhythm, drums = _repeats(model)
    rhythm_off, drums_off = _repeats(ModelGenerator.load(sampling=Sampling(groove_bias=0.0)))
    assert drums > drums_off + 0.15
    assert rhythm > rhythm_off + 0.05


def test_a_pad_chord_leans_to_its_missing_tones_first() -> None:
    """C minor's tonic chord over a C and a G already sounding: only the E-flat above the G
    (within its octave) gains the bias; with `have_share` 1 every chord tone does."""
    c4, g4 = (NOTE0 + 60 - 60 - REL_PITCH_LOW + k for k in (0, 7))  # tonic C: relative pitch
    have = chord_mask([(0, 2, c4, 0), (0, 2, g4, 0)], notes=2)
    assert have == 1 << 0 | 1 << 7
    row = tones_row(0, 3, 10.0, above=g4, have=have, have_share=0.0)
    assert np.flatnonzero(row).tolist() == [g4 + 8]  # E-flat 5, a minor sixth above G
    every = tones_row(0, 3, 10.0, above=g4, have=have, have_share=1.0)
    assert np.flatnonzero(every).tolist() == [g4 + 5, g4 + 8, g4 + 12]  # C, E-flat, G


def _pad_chords_with_the_third(model: ModelGenerator) -> float:
    """Over low-density loops in A minor 4/4 and D major 6/8: the share of the pad's chords
    (2+ notes at one onset) that sound the third of the bar's chord in the loop's plan."""
    out = []
    for seed in range(16):
        for meter, mode, tonic_pc in ((FOUR_FOUR, "minor", 9), (Meter(6, 8), "major", 2)):
            s = spec(meter=meter, seed=seed, density="low", mode=mode, tonic=tonic_pc)
            plan, bar_beats = chord_plan(mode, s.bars, s.seed), s.beats / s.bars
            onsets: dict[float, list[int]] = {}
            for n in model.generate(s).notes:
                if n.part == "pad":
                    onsets.setdefault(n.start_beats, []).append(n.pitch)
            for start, pitches in onsets.items():
                root, third = plan[int(start // bar_beats)]
                if len(pitches) >= 2:
                    out.append(any((p - tonic_pc - root - third) % 12 == 0 for p in pitches))
    assert len(out) >= 40
    return float(np.mean(out))


def test_the_pad_sounds_its_chords_third(model: ModelGenerator) -> None:
    """The third says major or minor: a pad of open fifths leaves a minor loop heard as major.
    The model taught by the decoding fills in thirds itself (92 % of these chords when the pad
    prior doubles tones as readily, against 49 % for the model before it); without the pad
    prior it follows its own chords, not the plan's (49 %; 83 % for the second taught model,
    which voices the plan's chords more often on its own)."""
    with_third = _pad_chords_with_the_third(model)
    doubling = _pad_chords_with_the_third(
        ModelGenerator.load(sampling=Sampling(pad_double_share=1.0))
    )
    unled = _pad_chords_with_the_third(ModelGenerator.load(sampling=Sampling(pad_chord_bias=0.0)))
    assert with_third >= 0.9
    # The third taught model fills in thirds even when the prior doubles as readily (96 %).
    assert with_third >= doubling
    assert with_third > unled + 0.05  # the third taught model alone: 90 %


@pytest.mark.parametrize("mode", ["major", "minor"])
@pytest.mark.parametrize("bars", [1, 2, 4, 8])
def test_a_chord_plan_starts_on_the_tonic_and_returns(mode: str, bars: int) -> None:
    for seed in range(8):
        plan = chord_plan(mode, bars, seed)
        assert len(plan) == bars
        assert plan[0] == (0, 3 if mode == "minor" else 4)  # the tonic chord, in the mode
        if bars > 1:  # the last bar leads back: the major dominant, or the subdominant
            assert plan[-1] in (((7, 4),) if mode == "minor" else ((7, 4), (5, 4)))


def test_the_model_writes_each_bars_chord_first_and_the_plan_steers_it(
    model: ModelGenerator,
) -> None:
    """The model writes the harmony, a chord token after each bar line; shipped decoding leans
    that choice on the loop's chord plan, the model alone chooses for itself."""
    alone = ModelGenerator.load(sampling=Sampling(harmony_bias=0.0))
    on_plan = {"shipped": 0, "alone": 0}
    bars = 0
    for seed in range(12):
        s = spec(seed=seed, mode=("major", "minor")[seed % 2])
        plan = [
            chord_token(r, "min" if third == 3 else "maj")
            for r, third in chord_plan(s.mode, s.bars, seed)
        ]
        for name, generator in (("shipped", model), ("alone", alone)):
            tokens = generator.tokens(s)
            lines = [i for i, t in enumerate(tokens) if t == BAR]
            assert len(lines) == s.bars and all(tokens[i + 1] >= CHORD0 for i in lines)
            chords = [tokens[i + 1] for i in lines]
            on_plan[name] += sum(c == p for c, p in zip(chords, plan, strict=True))
        bars += s.bars
    assert on_plan["shipped"] >= 0.9 * bars
    assert on_plan["alone"] < on_plan["shipped"]


def test_a_borrowed_chord_brings_its_own_scale_for_its_bar(model: ModelGenerator) -> None:
    """Major loops whose plan borrows the minor subdominant (I vi iv V, I IV iv V, I ii iv V)
    sound its flat sixth in that bar, and almost never the natural sixth it replaces: the scale
    prior follows the chord (held to the key's scale, every A flat but the chord's would lose)."""
    from engine.making.priors import scale_row

    row = scale_row("major", 2.0, 1.0, (5, 3, 7))  # iv in major: F A-flat C
    pcs = {pc: row[NOTE0 + 60 + pc - REL_PITCH_LOW] for pc in range(12)}
    assert pcs[8] == 0.0 and pcs[9] == -2.0  # A flat in, A out; the rest as the scale
    assert pcs[4] == 1.0 and pcs[1] == -2.0 and pcs[7] == 0.0
    two = scale_row("major", 2.0, 1.0, (2, 4, 7))  # II in major: D F-sharp A
    assert two[NOTE0 + 66 - REL_PITCH_LOW] == 0.0 and two[NOTE0 + 65 - REL_PITCH_LOW] == -2.0
    picardy = scale_row("minor", 2.0, 1.0, (0, 4, 7))  # C major in C minor: E, not E flat
    assert picardy[NOTE0 + 64 - REL_PITCH_LOW] == 0.0
    assert picardy[NOTE0 + 63 - REL_PITCH_LOW] == -2.0
    minor = scale_row("minor", 2.0, 0.0)  # the leading tone is spared ...
    subtonic = scale_row("minor", 2.0, 0.0, (10, 4, 7))  # ... but not under VII: B flat D F
    assert minor[NOTE0 + 71 - REL_PITCH_LOW] == 0.0 and subtonic[NOTE0 + 71 - REL_PITCH_LOW] < 0
    assert subtonic[NOTE0 + 70 - REL_PITCH_LOW] == 0.0
    for chord in ((0, 4, 7), (7, 4, 7), (9, 3, 7), (11, 3, 6)):  # diatonic: the key's scale
        assert (scale_row("major", 2.0, 1.0, chord) == scale_row("major", 2.0, 1.0)).all()
    flat, natural, bars, notes = 0, 0, 0, 0
    for seed in range(80):
        s = spec(seed=seed, mode="major", mood="calm", tonic=0, density="medium")
        plan = chord_plan("major", s.bars, seed)
        borrowed = [bar for bar, chord in enumerate(plan) if chord == (5, 3)]
        if not borrowed:
            continue
        bar_beats = s.beats / s.bars
        for n in model.generate(s).notes:
            if n.part != "drums" and int(n.start_beats // bar_beats) in borrowed:
                flat += n.pitch % 12 == 8
                natural += n.pitch % 12 == 9
                notes += 1
        bars += len(borrowed)
    assert bars >= 16, "the major plans borrow the minor subdominant"
    # 18 % of the notes in those bars (the chord's third); 11 % with the key's scale held
    assert flat >= 0.15 * notes and natural < flat / 10, (flat, natural, notes)


def _lead_steps(model: ModelGenerator) -> float:
    """The share of the lead's moves from one onset to the next that are a step (one or two
    semitones), over medium loops in A minor 4/4 and D major 6/8."""
    steps, moves = 0, 0
    for seed in range(12):
        for meter, mode, tonic_pc in ((FOUR_FOUR, "minor", 9), (Meter(6, 8), "major", 2)):
            s = spec(meter=meter, seed=seed, mode=mode, tonic=tonic_pc, density="medium")
            top: dict[float, int] = {}
            for n in model.generate(s).notes:
                if n.part == "lead":
                    top[n.start_beats] = max(top.get(n.start_beats, 0), n.pitch)
            line = [top[t] for t in sorted(top)]
            steps += sum(1 <= abs(b - a) <= 2 for a, b in pairwise(line))
            moves += max(0, len(line) - 1)
    assert moves >= 100
    return steps / moves


def test_the_lead_moves_by_step_between_its_strong_notes(model: ModelGenerator) -> None:
    """The melody prior: off the pulse, the lead leans a step from its last note, as a
    melody's passing and neighbour notes do (held-out game music's leads: a quarter of their
    moves); without it, the model's leads leap or repeat a note."""
    with_steps = _lead_steps(model)
    without = _lead_steps(ModelGenerator.load(sampling=Sampling(step_bias=0.0)))
    assert with_steps >= 0.15 and with_steps > without + 0.08, (with_steps, without)


def _pulses_played(model: ModelGenerator, density: str) -> float:
    """The share of (melodic part, pulse) pairs of four-part loops in which that part starts a
    note, over loops in A minor 4/4 and D major 6/8."""
    played, pulses = 0, 0
    for seed in range(8):
        for meter, mode, tonic_pc in ((FOUR_FOUR, "minor", 9), (Meter(6, 8), "major", 2)):
            s = spec(meter=meter, seed=seed, mode=mode, tonic=tonic_pc, density=density)
            pulse = pulse_steps(meter) / 4  # in quarter notes
            notes = model.generate(s).notes
            for part in ("bass", "pad", "lead"):
                played += len({int(n.start_beats // pulse) for n in notes if n.part == part})
                pulses += round(s.beats / pulse)
    return played / pulses


def test_no_part_of_a_high_loop_rests_long(model: ModelGenerator) -> None:
    """In a high loop the parts prior is at full strength after a pulse of rest, not a bar:
    a dense texture keeps every part moving (held out: 28.5 → 35.3 notes a bar)."""
    high, medium = _pulses_played(model, "high"), _pulses_played(model, "medium")
    assert high >= 0.6 and high > medium + 0.1, (high, medium)
