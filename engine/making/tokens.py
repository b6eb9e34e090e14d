"""Segue's loop tokens: a bar-aligned, REMI-like event vocabulary with control tokens first.

A loop is written as

    BOS QUAD_q MODE_m TEMPO_t DENS_d METER_x PART_drums_{on,off} .. PART_lead_{on,off}
    BAR  [POS_p  INST_part  (PITCH  DV)+ ...]*   BAR ...   EOS

- Time is a 16th-note grid: `POS_p` is the onset inside the bar (quarter beat = 4 steps).
- `INST_part` names one of `engine.score.music.PARTS`; notes of one part at one position follow it
  in ascending pitch order, so every set of notes has exactly one spelling.
- Melodic pitches are key-relative: `NOTE_r` means MIDI pitch `r + tonic` (tonic a pitch
  class 0..11), so the model never has to learn twelve copies of each key. Drums are
  `DRUM_k`, the General MIDI percussion key itself.
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


def decode(tokens: list[int] | np.ndarray, tonic: int) -> tuple[Controls, list[Note]]:
    """Controls and notes of a complete token sequence (checked against the grammar)."""
    controls = controls_of(tokens)
    bars = sum(1 for t in tokens if t == BAR)
    grammar = Grammar(controls.meter, bars, controls.parts)
    for token in tokens[PREFIX_LEN:]:
        grammar.advance(int(token))
    if not grammar.done:
        raise TokenError("token sequence ends before EOS")
    return controls, grammar.notes(tonic)


Event = tuple[int, int, int, int]  # (16th step from the loop start, part index, pitch token, DV)


def grammar_events(
    notes: list[Note] | tuple[Note, ...], controls: Controls, bars: int, tonic: int
) -> list[Event]:
    """Notes as the grammar's events (snapped and filtered as `encode` does)."""
    grammar = Grammar(controls.meter, bars, controls.parts)
    for token in encode(notes, controls, bars, tonic)[PREFIX_LEN:]:
        grammar.take(token)
    return grammar.events


_ANY_DV = (-1, 0, -1, (), 0, 0, DV0, DV0 + N_DV)
_ANY_DRUM = (-1, 0, -1, (), DRUM0, DRUM0 + N_DRUM, 0, 0)
_ANY_NOTE = (-1, 0, -1, (), NOTE0, NOTE0 + N_NOTE, 0, 0)
# Token arrays by option set, shared by every Grammar (a loop needs a few hundred of them).
_CHOICES: dict[tuple, np.ndarray] = {}


class Grammar:
    """The loop grammar as a state machine over the tokens after the control prefix.

    `choices()` gives the token ids that may come next and `advance(token)` takes one (raising
    TokenError for a token the grammar forbids); `take(token)` skips the check. The grammar
    collects the notes as events (step, part index, pitch token, DV token) as it goes.

    Beyond the loop's shape (bars, meter, requested parts, ascending chords) the sampler can
    ask for three guarantees:
    - `fixed`: events that must be played as given, e.g. a designer's motif. At their steps
      their part plays exactly those notes; between them, inside their span, that part
      rests while the other parts may play around them;
    - `min_onsets`: at least this many onset positions in the loop: once the loop runs
      short, only the next free 16th may start notes (a density floor);
    - `fill_bars`: no bar without an onset;
    and `bar_budget`: the most tokens one bar may take, spent pro rata: once the bar has
    used its share up to the current 16th, no more notes join this onset and the loop moves
    on (it bounds the time to write a loop without ever cutting a bar short).
    """

    __slots__ = (
        "bars", "steps_in_bar", "bar", "pos", "part", "last_pitch", "chord", "phase", "done",
        "events", "max_chord", "bar_budget", "bar_tokens", "onsets", "min_onsets", "fill_bars",
        "_parts", "_inst", "_fixed", "_fixed_steps", "_fixed_part", "_fixed_span", "_next_fixed",
        "_fixed_notes", "_total_steps",
    )  # fmt: skip

    def __init__(
        self,
        meter: str,
        bars: int,
        parts: tuple[str, ...],
        max_chord: int = MAX_CHORD,
        bar_budget: int | None = None,
        min_onsets: int = 0,
        fill_bars: bool = False,
        fixed: list[Event] | tuple[Event, ...] = (),
    ) -> None:
        self.steps_in_bar = bar_steps(meter)
        if self.steps_in_bar > MAX_BAR_STEPS:
            raise TokenError(f"meter {meter} has more than {MAX_BAR_STEPS} 16ths in a bar")
        self.bars = bars
        self.max_chord = max_chord
        self.bar_budget = bar_budget
        self.min_onsets = min_onsets
        self.fill_bars = fill_bars
        self.bar_tokens = 0
        self.onsets = 0
        self._total_steps = bars * self.steps_in_bar
        self._parts = tuple(sorted(PARTS.index(p) for p in parts))
        self._inst = tuple(INST0 + p for p in self._parts)
        self.bar, self.pos, self.part, self.last_pitch, self.chord = -1, -1, -1, -1, 0
        self.phase = "start"  # start | bar | pos | inst | pitch | dv
        self.done = False
        self.events: list[Event] = []
        # Fixed events by step: [(pitch token, DV token), ...] ascending, for one part.
        self._fixed: dict[int, list[tuple[int, int]]] = {}
        parts_fixed = {e[1] for e in fixed}
        if len(parts_fixed) > 1:
            raise TokenError("fixed events must all belong to one part")
        if parts_fixed and not parts_fixed <= set(self._parts):
            raise TokenError("fixed events belong to a part that is not requested")
        for step, _, pitch, dv in sorted(fixed):
            if 0 <= step < self._total_steps:
                self._fixed.setdefault(step, []).append((pitch, dv))
        self._fixed_steps = sorted(self._fixed)
        self._fixed_part = parts_fixed.pop() if self._fixed else -1
        self._fixed_span = (
            (self._fixed_steps[0], self._fixed_steps[-1]) if self._fixed else (-1, -1)
        )
        self._next_fixed = 0  # index into _fixed_steps of the first step not yet written
        self._fixed_notes = 0  # fixed notes written at the current step

    # -- what may come next -------------------------------------------------------------
    def _options(self) -> tuple:
        """What may come next, as a hashable description: (end token or -1, first and last
        position, part tokens, first and end pitch token, first and end DV token)."""
        if self.done:
            return (-1, 0, -1, (), 0, 0, 0, 0)
        phase = self.phase
        if self.part != self._fixed_part:  # the common cases first (the sampler's hot path)
            if phase == "pitch":
                return _ANY_DV
            if phase == "inst":
                return _ANY_DRUM if self.part == 0 else _ANY_NOTE
        step = self.bar * self.steps_in_bar + self.pos
        fixed_here = self._fixed.get(step) if phase != "bar" else None
        pending = None  # fixed notes of this step not all written yet
        if fixed_here is not None and self._next_fixed < len(self._fixed_steps):
            if step == self._fixed_steps[self._next_fixed]:
                pending = fixed_here
        if phase == "start":
            return (BAR, 0, -1, (), 0, 0, 0, 0)
        if phase == "pos":
            return (-1, 0, -1, self._part_tokens(step, -1, pending), 0, 0, 0, 0)
        if phase == "inst":
            if pending is not None and self.part == self._fixed_part:
                pitch = pending[0][0]
                return (-1, 0, -1, (), pitch, pitch + 1, 0, 0)
            return _ANY_DRUM if self.part == 0 else _ANY_NOTE
        if phase == "pitch":
            if pending is not None and self.part == self._fixed_part:
                dv = pending[self._fixed_notes][1]
                return (-1, 0, -1, (), 0, 0, dv, dv + 1)
            return _ANY_DV
        # After BAR or after a note's DV.
        steps = self.steps_in_bar
        end = BAR if self.bar < self.bars - 1 else EOS
        if pending is not None:
            if self.part == self._fixed_part:  # the next fixed note
                pitch = pending[self._fixed_notes][0]
                return (-1, 0, -1, (), pitch, pitch + 1, 0, 0)
            # Parts below the fixed part may play here first; the fixed part must follow.
            low, high = self._more_pitches()
            parts = tuple(INST0 + p for p in self._parts if self.part < p <= self._fixed_part)
            return (-1, 0, -1, parts, low, high, 0, 0)
        first, last, end_ok = self.pos + 1, steps - 1, True
        stay = phase == "dv"
        pinned = False  # the fixed notes alone decide where the next onset may be
        if self._next_fixed < len(self._fixed_steps):
            next_step = self._fixed_steps[self._next_fixed] - self.bar * steps
            solo = self._parts == (self._fixed_part,) and step >= self._fixed_span[0]
            if next_step < steps:  # a fixed onset still to come in this bar: do not skip it
                last, end_ok = next_step, False
                if solo:  # the fixed part alone rests between its notes
                    first, pinned = next_step, True
            elif solo:  # ... until its next note, in a later bar
                first, pinned = steps, True
        if self.min_onsets and not pinned:
            slack = max(0, self._total_steps - (step + 1) - (self.min_onsets - self.onsets))
            last = min(last, self.pos + 1 + slack)
            end_ok = end_ok and steps - 1 - self.pos <= slack  # no 16th of this bar owed
        if self.fill_bars and phase == "bar" and first <= last:
            end_ok = False
        if self.bar_budget is not None and (
            self.bar_tokens * steps >= self.bar_budget * (self.pos + 1)
        ):
            stay = False  # ahead of the bar's budget, pro rata: on to the next onset
        low, high, parts = 0, 0, ()
        if stay:
            low, high = self._more_pitches()
            if fixed_here is not None and self.part == self._fixed_part:
                low = high = 0  # the fixed notes are the whole chord
            parts = self._part_tokens(step, self.part, None)
        if first > last and not parts and low >= high:
            end_ok = True  # nothing else is possible: the bar ends (a guarantee gives way)
        return (end if end_ok else -1, POS0 + first, POS0 + last, parts, low, high, 0, 0)

    def _more_pitches(self) -> tuple[int, int]:
        """Pitch tokens that may join the chord of the current part (above the last one)."""
        if self.chord >= self.max_chord:
            return 0, 0
        if self.part == 0:
            return max(DRUM0, self.last_pitch + 1), DRUM0 + N_DRUM
        return max(NOTE0, self.last_pitch + 1), NOTE0 + N_NOTE

    def _part_tokens(self, step: int, above: int, pending) -> tuple[int, ...]:
        """Part tokens that may start notes at `step` after part `above` (`pending`: the
        fixed notes of this step still to be written, if any)."""
        if pending is not None:
            return tuple(INST0 + p for p in self._parts if above < p <= self._fixed_part)
        span_first, span_last = self._fixed_span
        if span_first <= step <= span_last:  # the fixed part rests between its notes
            return tuple(INST0 + p for p in self._parts if p > above and p != self._fixed_part)
        return tuple(t for t in self._inst if t > INST0 + above)

    def choices(self) -> np.ndarray:
        """The allowed token ids, ascending (a shared array: do not modify it)."""
        key = self._options()
        tokens = _CHOICES.get(key)
        if tokens is None:
            end, first, last, parts, low, high, dv_low, dv_high = key
            tokens = np.concatenate(
                [
                    np.array([end] if end >= 0 else [], dtype=np.int64),
                    np.arange(first, last + 1, dtype=np.int64),
                    np.array(parts, dtype=np.int64),
                    np.arange(low, high, dtype=np.int64),
                    np.arange(dv_low, dv_high, dtype=np.int64),
                ]
            )
            tokens.flags.writeable = False
            if len(_CHOICES) > 100_000:
                _CHOICES.clear()
            _CHOICES[key] = tokens
        return tokens

    # -- taking a token -----------------------------------------------------------------
    def advance(self, token: int) -> None:
        """Take `token`, checking it against the grammar first."""
        choices = self.choices()
        i = int(np.searchsorted(choices, token))
        if i == len(choices) or choices[i] != token:
            raise TokenError(f"token {VOCAB[token]} not allowed after {self.phase}")
        self.take(token)

    def take(self, token: int) -> None:
        """Take a token drawn from `choices()` (the sampler's hot path: no check)."""
        self.bar_tokens += 1
        if token == BAR:
            self.bar_tokens = 0
            self.bar, self.pos, self.part, self.phase = self.bar + 1, -1, -1, "bar"
        elif token == EOS:
            self.done = True
        elif token < INST0:  # a position
            self.pos, self.part, self.phase = token - POS0, -1, "pos"
            self.onsets += 1
        elif token < NOTE0:  # a part
            self.part, self.last_pitch, self.chord, self.phase = token - INST0, -1, 0, "inst"
        elif token < DV0:  # a pitch
            self.last_pitch, self.phase = token, "pitch"
        else:
            step = self.bar * self.steps_in_bar + self.pos
            self.events.append((step, self.part, self.last_pitch, token))
            self.chord += 1
            self.phase = "dv"
            if self.part == self._fixed_part and step in self._fixed:
                self._fixed_notes += 1
                if self._fixed_notes == len(self._fixed[step]):
                    self._next_fixed += 1
                    self._fixed_notes = 0

    def notes(self, tonic: int) -> list[Note]:
        """The notes taken so far; melodic pitches are made absolute with `tonic`."""
        notes = []
        for step, part, pitch_tok, dv in self.events:
            if part == 0:
                pitch = pitch_tok - DRUM0 + DRUM_LOW
            else:
                pitch = pitch_tok - NOTE0 + REL_PITCH_LOW + tonic
            dur_index, vel_level = divmod(dv - DV0, len(VELOCITIES))
            notes.append(
                Note(
                    part=PARTS[part],
                    pitch=pitch,
                    start_beats=step / STEPS_PER_BEAT,
                    duration_beats=DURATION_STEPS[dur_index] / STEPS_PER_BEAT,
                    velocity=VELOCITIES[vel_level],
                )
            )
        return notes
