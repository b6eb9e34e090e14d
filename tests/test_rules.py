"""The rule-based generator: bars, key, parts, seeds, density and motif development."""

from __future__ import annotations

import itertools

import pytest

from engine.making.rules import RuleGenerator
from engine.score.gm import instrument
from engine.score.music import DENSITIES, MODES, MOODS, PARTS, LoopSpec, Meter, Note, scale_of

GENERATOR = RuleGenerator()
ALL_PARTS = (
    ("drums", "standard"),
    ("bass", "acoustic_bass"),
    ("pad", "strings"),
    ("lead", "flute"),
)
METERS = (Meter(4, 4), Meter(3, 4), Meter(6, 8))
QUADRANT_MOODS = ("happy", "calm", "tense", "sad")


def make_spec(
    mood: str = "happy",
    mode: str = "major",
    meter: Meter = METERS[0],
    bars: int = 4,
    density: str = "medium",
    seed: int = 0,
    tonic: int = 0,
    parts: tuple[tuple[str, str], ...] = ALL_PARTS,
    motif: tuple[Note, ...] = (),
) -> LoopSpec:
    instruments = tuple((part, instrument(part, name)) for part, name in parts)
    return LoopSpec(
        "test", mood, mode, tonic, 120.0, meter, bars, instruments, density, seed, motif
    )


def in_scale_fraction(notes, tonic: int, mode: str) -> float:
    scale = {(tonic + step) % 12 for step in scale_of(mode)}
    pitched = [n for n in notes if n.part != "drums"]
    return sum(n.pitch % 12 in scale for n in pitched) / len(pitched)


CASES = [
    (mood, mode, meter, density, tonic)
    for (mood, mode, meter, density), tonic in zip(
        itertools.product(QUADRANT_MOODS, MODES, METERS, DENSITIES), itertools.cycle(range(12))
    )
]


@pytest.mark.parametrize("mood, mode, meter, density, tonic", CASES)
def test_loop_fits_bars_key_and_parts(mood, mode, meter, density, tonic):
    spec = make_spec(mood, mode, meter, bars=3, density=density, tonic=tonic, seed=tonic)
    loop = GENERATOR.generate(spec)
    assert loop.generator == "rules"
    assert loop.spec == spec
    assert spec.beats == 3 * meter.beats_per_bar * 4 / meter.beat_unit
    assert all(0.0 <= n.start_beats < spec.beats for n in loop.notes)
    assert all(n.duration_beats > 0 and 1 <= n.velocity <= 127 for n in loop.notes)
    assert {n.part for n in loop.notes} == set(PARTS)
    # Every bar carries notes: the loop is exactly `bars` long, not shorter.
    bar_beats = spec.beats / spec.bars
    assert {int(n.start_beats // bar_beats) for n in loop.notes} == {0, 1, 2}
    assert in_scale_fraction(loop.notes, tonic, mode) >= 0.95


@pytest.mark.parametrize(
    "parts",
    [
        (("drums", "power"),),
        (("bass", "electric_bass"), ("lead", "trumpet")),
        (("pad", "choir"),),
        (("lead", "flute"), ("drums", "jazz")),
    ],
)
def test_only_requested_parts(parts):
    loop = GENERATOR.generate(make_spec(parts=parts))
    assert {n.part for n in loop.notes} == {part for part, _ in parts}


def test_drums_use_gm_percussion_keys():
    loop = GENERATOR.generate(make_spec(density="high"))
    keys = {n.pitch for n in loop.notes if n.part == "drums"}
    assert {36, 38, 42} <= keys  # kick, snare, closed hat
    assert keys <= set(range(35, 82))  # GM percussion map


@pytest.mark.parametrize("mood", QUADRANT_MOODS)
def test_same_seed_same_loop_other_seed_other_loop(mood):
    first = GENERATOR.generate(make_spec(mood, seed=7))
    again = GENERATOR.generate(make_spec(mood, seed=7))
    other = GENERATOR.generate(make_spec(mood, seed=8))
    assert first.notes == again.notes
    assert first.notes != other.notes


@pytest.mark.parametrize("mood, meter", list(itertools.product(MOODS, METERS)))
def test_densities_ordered(mood, meter):
    counts = [
        len(GENERATOR.generate(make_spec(mood, meter=meter, density=d, seed=3)).notes)
        for d in DENSITIES
    ]
    assert counts[0] < counts[1] < counts[2], counts


def test_arousal_raises_note_density():
    for seed in range(5):
        energetic = len(GENERATOR.generate(make_spec("happy", seed=seed)).notes)
        calm = len(GENERATOR.generate(make_spec("calm", seed=seed)).notes)
        assert energetic > calm


def test_moods_differ_beyond_density():
    # happy and tense share arousal; valence must still change the music.
    happy = GENERATOR.generate(make_spec("happy", mode="minor", seed=1))
    tense = GENERATOR.generate(make_spec("tense", mode="minor", seed=1))
    pitches = {m: sorted(n.pitch for n in loop.notes if n.part == "lead") for m, loop in
               (("happy", happy), ("tense", tense))}  # fmt: skip
    assert pitches["happy"] != pitches["tense"]
    drums = [{n.pitch for n in loop.notes if n.part == "drums"} for loop in (happy, tense)]
    assert drums[0] != drums[1]


MOTIF = tuple(
    Note("lead", pitch, start, duration, 96)
    for pitch, start, duration in ((67, 0.0, 0.5), (69, 0.5, 0.5), (71, 1.0, 1.0), (74, 2.0, 2.0))
)  # G A B D in C major


def intervals(pitches: list[int]) -> list[int]:
    return [b - a for a, b in zip(pitches, pitches[1:], strict=False)]


def contains(seq: list[int], sub: list[int]) -> int:
    return sum(seq[i : i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


@pytest.mark.parametrize("mood, meter", list(itertools.product(QUADRANT_MOODS, METERS)))
def test_motif_is_developed(mood, meter):
    spec = make_spec(mood, "major", meter, bars=4, motif=MOTIF, seed=5)
    lead = sorted((n for n in GENERATOR.generate(spec).notes if n.part == "lead"),
                  key=lambda n: n.start_beats)  # fmt: skip
    lead_pitches = [n.pitch for n in lead]
    motif_intervals = intervals([n.pitch for n in MOTIF])
    # Stated with its own intervals (octave placement may change) ...
    assert contains(intervals(lead_pitches), motif_intervals) >= 1
    # ... and developed, not merely repeated: more notes than one statement, other pitches too.
    assert len(lead) > len(MOTIF)
    assert set(lead_pitches) - {p + o for p in (67, 69, 71, 74) for o in (-24, -12, 0, 12, 24)}
    assert in_scale_fraction(lead, 0, "major") >= 0.95


def test_motif_longer_than_loop_is_cut_at_loop_end():
    long_motif = tuple(Note("lead", 60 + (i % 5) * 2, i * 1.0, 1.0, 90) for i in range(24))
    spec = make_spec(bars=2, motif=long_motif)
    lead = [n for n in GENERATOR.generate(spec).notes if n.part == "lead"]
    assert lead and all(n.start_beats < spec.beats for n in lead)
