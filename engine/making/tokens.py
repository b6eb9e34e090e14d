"""Segue's loop tokens: a bar-aligned, REMI-like event vocabulary with control tokens first.

A loop is written as

    BOS QUAD_q MODE_m TEMPO_t DENS_d METER_x PART_drums_{on,off} .. PART_lead_{on,off}
    BAR CHORD_c  [POS_p  INST_part  (PITCH  DV)+ ...]*   BAR CHORD_c ...   EOS

- Time is a 16th-note grid: `POS_p` is the onset inside the bar (quarter beat = 4 steps).
- `INST_part` names one of `engine.score.music.PARTS`; notes of one part at one position follow it
  in ascending pitch order, so every set of notes has exactly one spelling.
- Melodic pitches are key-relative: `NOTE_r` means MIDI pitch `r + tonic` (tonic a pitch
  class 0..11), so the model never has to learn twelve copies of each key. Drums are
  `DRUM_k`, the General MIDI percussion key itself.
- `CHORD_c` after each bar line is the bar's harmony: a root relative to the tonic and a
  quality (`CHORD_7maj` is the dominant's major triad), or `CHORD_none` for a bar without
  melodic notes. The model writes the harmony first and the notes under it. In data the
  chord is found from the bar's notes (`bar_chord`), never labelled by hand.
- `DV_d_v` joins a duration (16ths) and a velocity level in one token: one token fewer per
  note keeps an 8-second loop short enough to write in a few tens of milliseconds.

`Grammar` is the loop grammar as a state machine: it says which tokens may come next and is
used both to check encoded data and to constrain sampling. This module needs only numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.score.music import DENSITIES, MODES, PARTS, QUADRANTS, Meter, Note

STEPS_PER_BEAT = 4  # 16th-note grid
MAX_BAR_STEPS = 32  # longest bar: 8 quarter beats
METERS: tuple[str, ...] = (
    "2/4", "3/4", "4/4", "5/4", "6/4", "2/2", "3/2", "3/8", "6/8", "7/8", "9/8", "12/8",
)  # fmt: skip
TEMPOS: tuple[str, ...] = ("slow", "medium", "fast")
TEMPO_EDGES_BPM = (96.0, 132.0)  # slow < 96 <= medium < 132 <= fast
DURATION_STEPS: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
VELOCITIES: tuple[int, ...] = (48, 72, 96, 116)  # level centres
VELOCITY_EDGES = (60, 84, 106)
REL_PITCH_LOW, REL_PITCH_HIGH = 12, 108  # key-relative pitch range, inclusive
DRUM_LOW, DRUM_HIGH = 27, 87  # GM percussion keys kept, inclusive
MAX_CHORD = 8  # most notes one part may start at one position
QUALITIES: dict[str, tuple[int, ...]] = {"maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6)}


def _vocabulary() -> tuple[str, ...]:
    words = ["PAD", "BOS", "EOS", "BAR"]
    words += [f"QUAD_{q}" for q in QUADRANTS.values()]
    words += [f"MODE_{m}" for m in MODES]
    words += [f"TEMPO_{t}" for t in TEMPOS]
    words += [f"DENS_{d}" for d in DENSITIES]
    words += [f"METER_{m}" for m in METERS]
    for part in PARTS:
        words += [f"PART_{part}_on", f"PART_{part}_off"]
    words += [f"POS_{p}" for p in range(MAX_BAR_STEPS)]
    words += [f"INST_{part}" for part in PARTS]
    words += [f"NOTE_{r}" for r in range(REL_PITCH_LOW, REL_PITCH_HIGH + 1)]
    words += [f"DRUM_{k}" for k in range(DRUM_LOW, DRUM_HIGH + 1)]
    words += [f"DV_{d}_{v}" for d in DURATION_STEPS for v in range(len(VELOCITIES))]
    # Last, so that a model written before the harmony tokens keeps its token ids.
    words += [f"CHORD_{r}{q}" for r in range(12) for q in QUALITIES] + ["CHORD_none"]
    return tuple(words)


VOCAB: tuple[str, ...] = _vocabulary()
INDEX: dict[str, int] = {word: i for i, word in enumerate(VOCAB)}
PAD, BOS, EOS, BAR = 0, 1, 2, 3
POS0 = INDEX["POS_0"]
INST0 = INDEX["INST_drums"]
NOTE0 = INDEX[f"NOTE_{REL_PITCH_LOW}"]
DRUM0 = INDEX[f"DRUM_{DRUM_LOW}"]
DV0 = INDEX[f"DV_{DURATION_STEPS[0]}_0"]
N_NOTE = REL_PITCH_HIGH - REL_PITCH_LOW + 1
N_DRUM = DRUM_HIGH - DRUM_LOW + 1
N_DV = len(DURATION_STEPS) * len(VELOCITIES)
CHORD0 = INDEX["CHORD_0maj"]
CHORD_NONE = INDEX["CHORD_none"]
N_CHORD = CHORD_NONE - CHORD0 + 1
PREFIX_LEN = 6 + len(PARTS)  # BOS + 5 controls + one on/off token per part


class TokenError(ValueError):
    """A token sequence or a loop that the vocabulary cannot express."""


@dataclass(frozen=True, slots=True)
class Controls:
    """What a loop is conditioned on; every field is a token value."""

    quadrant: str  # one of QUADRANTS' names
    mode: str  # one of MODES
    tempo: str  # one of TEMPOS
    density: str  # one of DENSITIES
    meter: str  # one of METERS
    parts: tuple[str, ...]  # subset of PARTS, in PARTS order


def tempo_bucket(tempo_bpm: float) -> str:
    slow_below, fast_from = TEMPO_EDGES_BPM
    return "slow" if tempo_bpm < slow_below else "medium" if tempo_bpm < fast_from else "fast"


def bar_steps(meter: Meter | str) -> int:
    """Length of one bar in 16th-note steps."""
    if isinstance(meter, str):
        beats, unit = (int(x) for x in meter.split("/"))
    else:
        beats, unit = meter.beats_per_bar, meter.beat_unit
    return beats * 16 // unit


def velocity_level(velocity: int) -> int:
    return int(np.searchsorted(VELOCITY_EDGES, velocity, side="right"))


def duration_index(steps: float) -> int:
    """Nearest duration token on a log scale (a dotted value rounds to its neighbour)."""
    steps = max(steps, 0.5)
    return int(np.argmin(np.abs(np.log(np.asarray(DURATION_STEPS, float) / steps))))


def prefix_tokens(controls: Controls) -> list[int]:
    tokens = [
        BOS,
        INDEX[f"QUAD_{controls.quadrant}"],
        INDEX[f"MODE_{controls.mode}"],
        INDEX[f"TEMPO_{controls.tempo}"],
        INDEX[f"DENS_{controls.density}"],
        INDEX[f"METER_{controls.meter}"],
    ]
    for part in PARTS:
        tokens.append(INDEX[f"PART_{part}_{'on' if part in controls.parts else 'off'}"])
    return tokens


def controls_of(tokens: list[int] | np.ndarray) -> Controls:
    words = [VOCAB[t] for t in tokens[:PREFIX_LEN]]
    if len(words) < PREFIX_LEN or words[0] != "BOS":
        raise TokenError("token sequence does not start with BOS and the control tokens")
    values = [w.split("_", 1)[1] for w in words[1:6]]
    parts = tuple(p for p, w in zip(PARTS, words[6:], strict=True) if w.endswith("_on"))
    return Controls(values[0], values[1], values[2], values[3], values[4], parts)


def pitch_token(part: str, pitch: int, tonic: int) -> int:
    """The token of a note's pitch; melodic pitches outside the range fold by octaves."""
    if part == "drums":
        if not DRUM_LOW <= pitch <= DRUM_HIGH:
            raise TokenError(f"drum key {pitch} outside {DRUM_LOW}..{DRUM_HIGH}")
        return DRUM0 + pitch - DRUM_LOW
    rel = pitch - tonic
    while rel < REL_PITCH_LOW:
        rel += 12
    while rel > REL_PITCH_HIGH:
        rel -= 12
    return NOTE0 + rel - REL_PITCH_LOW


def encode(
    notes: list[Note] | tuple[Note, ...], controls: Controls, bars: int, tonic: int
) -> list[int]:
    """Tokens of `bars` bars of notes (starts in beats from the first bar line).

    Notes are snapped to the 16th grid; notes starting outside the bars, parts not in
    `controls.parts` and drum keys outside the kit range are dropped.
    """
    steps_in_bar = bar_steps(controls.meter)
    events: dict[tuple[int, int, int], tuple[int, int]] = {}
    for note in notes:
        step = round(note.start_beats * STEPS_PER_BEAT)
        if not 0 <= step < bars * steps_in_bar or note.part not in controls.parts:
            continue
        if note.part == "drums" and not DRUM_LOW <= note.pitch <= DRUM_HIGH:
            continue
        token = pitch_token(note.part, note.pitch, tonic)
        dv = DV0 + duration_index(note.duration_beats * STEPS_PER_BEAT) * len(VELOCITIES)
        dv += velocity_level(note.velocity)
        events.setdefault((step, PARTS.index(note.part), token), (token, dv))
    by_onset: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for (step, part, _), pair in sorted(events.items()):
        chord = by_onset.setdefault((step, part), [])
        if len(chord) < MAX_CHORD:
            chord.append(pair)
    tokens = prefix_tokens(controls)
    current_bar, current_pos = -1, -1
    for (step, part), chord in sorted(by_onset.items()):
        bar, pos = divmod(step, steps_in_bar)
        while current_bar < bar:
            tokens.append(BAR)
            current_bar, current_pos = current_bar + 1, -1
        if pos != current_pos:
            tokens.append(POS0 + pos)
            current_pos = pos
        tokens.append(INST0 + part)
        for pitch_tok, dv in chord:
            tokens += [pitch_tok, dv]
    while current_bar < bars - 1:
        tokens.append(BAR)
        current_bar += 1
    tokens.append(EOS)
    return tokens


# -- harmony ------------------------------------------------------------------------------
_TEMPLATES = np.array(
    [[1.0 if (pc - root) % 12 in tones else 0.0 for pc in range(12)]
     for root in range(12) for tones in QUALITIES.values()]
)  # fmt: skip


def chord_token(root: int, quality: str) -> int:
    return CHORD0 + (root % 12) * len(QUALITIES) + list(QUALITIES).index(quality)


def chord_of(token: int) -> tuple[int, tuple[int, ...]] | None:
    """(root, its tones as semitones above the root) of a chord token; None for CHORD_none."""
    if token == CHORD_NONE:
        return None
    root, quality = divmod(token - CHORD0, len(QUALITIES))
    return root, tuple(QUALITIES.values())[quality]


def opens_on_tonic(tokens: list[int] | np.ndarray) -> bool:
    """Whether a sequence's first chord token is a major or minor triad on the tonic."""
    for token in tokens:
        if CHORD0 <= token <= CHORD_NONE:
            chord = chord_of(int(token))
            return chord is not None and chord[0] == 0 and chord[1] != QUALITIES["dim"]
    return False


# Triads of each mode's scale (root, quality), the dominant's major triad in minor too: a tie
# between chords that sound the same notes (an open fifth, a lone note) goes to the mode's own.
DIATONIC: dict[str, frozenset[tuple[int, str]]] = {
    "major": frozenset({(0, "maj"), (2, "min"), (4, "min"), (5, "maj"), (7, "maj"), (9, "min"),
                        (11, "dim")}),
    "minor": frozenset({(0, "min"), (2, "dim"), (3, "maj"), (5, "min"), (7, "min"), (7, "maj"),
                        (8, "maj"), (10, "maj")}),
}  # fmt: skip
_DIATONIC_ROWS = {
    mode: np.array([float((root, q) in triads) for root in range(12) for q in QUALITIES])
    for mode, triads in DIATONIC.items()
}


def bar_chord(weights: np.ndarray, bass: int | None, mode: str = "major") -> int:
    """The chord token of a bar from its pitch classes: `weights[pc]` is how long pitch class
    pc (relative to the tonic) sounds in the bar, `bass` the pitch class of the bass part's
    lowest note (None: no bass part). The triad whose tones sound longest, less half of what
    sounds outside it, wins; the bass on the root breaks near ties (C-E-G-A is C major over C,
    A minor over A), and then the mode's own triads (an open fifth on the tonic of a minor
    loop is its minor chord)."""
    total = float(weights.sum())
    if total <= 0.0:
        return CHORD_NONE
    score = _TEMPLATES @ weights * 1.5 - total * 0.5
    if bass is not None:
        score[bass * len(QUALITIES) : (bass + 1) * len(QUALITIES)] += 0.25 * total
    score += 0.01 * total * _DIATONIC_ROWS.get(mode, _DIATONIC_ROWS["major"])
    return CHORD0 + int(np.argmax(score))
