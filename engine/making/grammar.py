"""The loop grammar over Segue's tokens (engine/making/tokens.py): what may come next, as a
state machine the sampler asks at every step; also how a token sequence decodes to notes."""

from __future__ import annotations

import numpy as np

from engine.making.tokens import (
    BAR,
    CHORD0,
    DRUM0,
    DRUM_LOW,
    DURATION_STEPS,
    DV0,
    EOS,
    INST0,
    MAX_BAR_STEPS,
    MAX_CHORD,
    N_CHORD,
    N_DRUM,
    N_DV,
    N_NOTE,
    NOTE0,
    POS0,
    PREFIX_LEN,
    REL_PITCH_LOW,
    STEPS_PER_BEAT,
    VELOCITIES,
    VOCAB,
    Controls,
    TokenError,
    bar_chord,
    bar_steps,
    controls_of,
    encode,
)
from engine.score.music import PARTS, Note


def decode(tokens: list[int] | np.ndarray, tonic: int) -> tuple[Controls, list[Note]]:
    """Controls and notes of a complete token sequence (checked against the grammar)."""
    controls = controls_of(tokens)
    bars = sum(1 for t in tokens if t == BAR)
    harmony = any(t >= CHORD0 for t in tokens)
    grammar = Grammar(controls.meter, bars, controls.parts, harmony=harmony)
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


def _readonly(tokens: np.ndarray) -> np.ndarray:
    tokens.flags.writeable = False
    return tokens


_DV_CHOICES = _readonly(np.arange(DV0, DV0 + N_DV, dtype=np.int64))
_DRUM_CHOICES = _readonly(np.arange(DRUM0, DRUM0 + N_DRUM, dtype=np.int64))
_NOTE_CHOICES = _readonly(np.arange(NOTE0, NOTE0 + N_NOTE, dtype=np.int64))


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

    With `harmony`, every bar line is followed by the bar's chord token (`chords` collects
    them, one a bar).
    """

    __slots__ = (
        "bars", "steps_in_bar", "bar", "pos", "part", "last_pitch", "chord", "phase", "done",
        "events", "max_chord", "bar_budget", "bar_tokens", "onsets", "min_onsets", "fill_bars",
        "_parts", "_inst", "_fixed", "_fixed_steps", "_fixed_part", "_fixed_span", "_next_fixed",
        "_fixed_notes", "_total_steps", "harmony", "chords",
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
        harmony: bool = False,
    ) -> None:
        self.harmony = harmony
        self.chords: list[int] = []  # chord token of each bar so far
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
        self.phase = "start"  # start | harm | bar | pos | inst | pitch | dv
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
        if self.phase == "harm":
            return (-1, 0, -1, (), 0, 0, CHORD0, CHORD0 + N_CHORD)
        phase = self.phase  # (a note's pitch and DV away from a fixed part: see `choices`)
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
        if self.part != self._fixed_part and not self.done:  # the hot path: two tokens of
            phase = self.phase  # three are a note's pitch or DV, whatever the rest of the state
            if phase == "pitch":
                return _DV_CHOICES
            if phase == "inst":
                return _DRUM_CHOICES if self.part == 0 else _NOTE_CHOICES
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
            self.bar, self.pos, self.part = self.bar + 1, -1, -1
            self.phase = "harm" if self.harmony else "bar"
        elif token >= CHORD0:
            self.chords.append(token)
            self.bar_tokens, self.phase = 0, "bar"
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


def with_chords(tokens: list[int] | np.ndarray) -> list[int]:
    """`tokens` with each bar's chord token after its BAR (`bar_chord` of the notes that sound
    in the bar: a note held over a bar line counts in both bars, the bass part twice)."""
    tokens = [int(t) for t in tokens]
    if any(t >= CHORD0 for t in tokens):
        return tokens
    controls = controls_of(tokens)
    bars = sum(1 for t in tokens if t == BAR)
    grammar = Grammar(controls.meter, bars, controls.parts)
    for token in tokens[PREFIX_LEN:]:  # a sequence cut short (no EOS) reads as far as it goes
        grammar.take(token)
    steps_in_bar = grammar.steps_in_bar
    weights = np.zeros((bars, 12))
    lowest = [128] * bars  # the bass part's lowest pitch in each bar
    bass = PARTS.index("bass")
    for start, part, pitch_tok, dv in grammar.events:
        if part == 0:  # drums
            continue
        pitch = pitch_tok - NOTE0 + REL_PITCH_LOW
        end = start + DURATION_STEPS[(dv - DV0) // len(VELOCITIES)]
        for b in range(start // steps_in_bar, min(bars, -(-end // steps_in_bar))):
            overlap = min(end, (b + 1) * steps_in_bar) - max(start, b * steps_in_bar)
            weights[b, pitch % 12] += overlap * (2.0 if part == bass else 1.0)
            if part == bass:
                lowest[b] = min(lowest[b], pitch)
    out, bar = [], -1
    for token in tokens:
        out.append(token)
        if token == BAR:
            bar += 1
            low = lowest[bar] % 12 if lowest[bar] < 128 else None
            out.append(bar_chord(weights[bar], low, controls.mode))
    return out
