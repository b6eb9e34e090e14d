"""The rule-based generator's lines (engine/making/rules.py): the sixteenth grid, the scale,
rhythms, registers and voice leading, and the lead's melody and motif development.

All times are in quarter-note beats from the loop start, on a sixteenth grid.
"""

from __future__ import annotations

import numpy as np

from engine.score.music import Meter, Note
from engine.score.units import quarters_per_bar, quarters_per_beat

GRID_BEATS = 0.25  # sixteenth notes


# Register (lowest, highest MIDI note) per part and arousal.
REGISTERS = {
    ("bass", 1): (33, 52),
    ("bass", -1): (28, 48),
    ("pad", 1): (55, 76),
    ("pad", -1): (48, 72),
    ("lead", 1): (67, 88),
    ("lead", -1): (60, 81),
}


class _Grid:
    """Bars, pulses and sixteenth steps of a meter, in quarter-note beats."""

    def __init__(self, meter: Meter, bars: int) -> None:
        self.bars = bars
        self.bar_beats = quarters_per_bar(meter)
        compound = meter.beat_unit == 8 and meter.beats_per_bar % 3 == 0 and meter.beats_per_bar > 3
        # 6/8 is felt in two dotted quarters, 3/4 in three quarters.
        self.pulse_beats = 1.5 if compound else quarters_per_beat(meter)
        self.pulses_per_bar = round(self.bar_beats / self.pulse_beats)
        self.compound = compound
        self.steps_per_bar = round(self.bar_beats / GRID_BEATS)
        self.steps_per_pulse = max(1, round(self.pulse_beats / GRID_BEATS))
        self.loop_beats = bars * self.bar_beats

    def beat(self, bar: int, step: int) -> float:
        return bar * self.bar_beats + step * GRID_BEATS

    def strength(self, step: int) -> int:
        """3 downbeat, 2 pulse, 1 eighth, 0 sixteenth."""
        if step == 0:
            return 3
        if step % self.steps_per_pulse == 0:
            return 2
        return 1 if step % 2 == 0 else 0


class _Scale:
    """Diatonic steps <-> MIDI pitches in one key."""

    def __init__(self, tonic: int, intervals: tuple[int, ...]) -> None:
        self.tonic = tonic % 12
        self.intervals = intervals

    def pitch(self, degree: int, octave: int = 0) -> int:
        """MIDI pitch of a diatonic degree counted from the tonic in octave 0 (C-1 = 0)."""
        octave += degree // 7
        return 12 * octave + self.tonic + self.intervals[degree % 7]

    def degree_of(self, pitch: int) -> tuple[int, int]:
        """(absolute diatonic degree, chromatic remainder) of a pitch: nearest degree below."""
        rel = pitch - self.tonic
        octave, pc = divmod(rel, 12)
        index = max(i for i, iv in enumerate(self.intervals) if iv <= pc)
        return octave * 7 + index, pc - self.intervals[index]

    def from_degree(self, absolute: int, remainder: int = 0) -> int:
        octave, index = divmod(absolute, 7)
        return self.tonic + 12 * octave + self.intervals[index] + remainder

    def chord_tones(self, root_degree: int, sevenths: bool = False) -> tuple[int, ...]:
        """Pitch classes of the diatonic triad (or seventh chord) on a degree."""
        offsets = (0, 2, 4, 6) if sevenths else (0, 2, 4)
        return tuple(self.pitch(root_degree + o) % 12 for o in offsets)


def _note(part: str, pitch: int, start: float, duration: float, velocity: float) -> Note:
    return Note(part, int(pitch), float(start), float(duration), min(127, max(1, int(velocity))))


def _is_backbeat(pulse: int, pulses_per_bar: int) -> bool:
    if pulses_per_bar == 3:
        return pulse in (1, 2)  # waltz: boom-chick-chick
    return pulse % 2 == 1


def _rhythm(
    grid: _Grid, rate: float, rng: np.random.Generator, strong_bias: float = 0.35
) -> list[list[int]]:
    """Onset steps per bar: one uniform draw per step, thresholded by metric strength.

    The draws do not depend on `rate`, so a higher rate yields a superset of onsets.
    """
    bars: list[list[int]] = []
    for _bar in range(grid.bars):
        u = rng.random(grid.steps_per_bar)
        onsets = []
        for step in range(grid.steps_per_bar):
            weight = (0.35, 0.75, 1.4, 2.2)[grid.strength(step)]
            p = rate * weight * (1.0 + strong_bias * (weight > 1.0))
            if step == 0 or u[step] < p:
                onsets.append(step)
        bars.append(onsets)
    return bars


def _nearest_pitch(pitch_class: int, target: int, low: int, high: int) -> int:
    candidates = [p for p in range(low, high + 1) if p % 12 == pitch_class]
    return min(candidates, key=lambda p: abs(p - target))


def _register(part: str, valence: int, arousal: int) -> tuple[int, int]:
    """Darker moods sit a minor third lower."""
    low, high = REGISTERS[(part, arousal)]
    shift = 0 if valence > 0 else -3
    return low + shift, high + shift


def _voice_lead(previous: list[int], tones: tuple[int, ...], low: int, high: int) -> list[int]:
    """Close voicing of `tones` that moves least from `previous` (root position first time)."""
    if not previous:
        base = _nearest_pitch(tones[0], (low + high) // 2 - 4, low, high)
        voicing = [base]
        for pc in tones[1:]:
            p = voicing[-1] + 1
            while p % 12 != pc:
                p += 1
            voicing.append(p)
        return voicing
    centre = sum(previous) / len(previous)
    best: list[int] = []
    best_cost = float("inf")
    for rotation in range(len(tones)):
        order = tones[rotation:] + tones[:rotation]
        for start in range(int(centre) - 12, int(centre) + 1):
            if start % 12 != order[0]:
                continue
            voicing = [start]
            for pc in order[1:]:
                p = voicing[-1] + 1
                while p % 12 != pc:
                    p += 1
                voicing.append(p)
            if voicing[0] < low - 2 or voicing[-1] > high + 2:
                continue
            cost = sum(min(abs(a - b) for b in voicing) for a in previous)
            if cost < best_cost:
                best, best_cost = voicing, cost
    return best or _voice_lead([], tones, low, high)


def _melody(
    grid: _Grid,
    scale: _Scale,
    chords: list[int],
    valence: int,
    arousal: int,
    density: float,
    rng: np.random.Generator,
) -> list[Note]:
    """A two-bar idea stated, answered and varied: motivic, so it sounds written."""
    low, high = _register("lead", valence, arousal)
    rate = (0.42 if arousal > 0 else 0.17) * density
    onsets = _rhythm(grid, rate, rng, strong_bias=0.2)
    u_step = rng.random((grid.bars, grid.steps_per_bar))
    u_vel = rng.normal(0.0, 6.0, (grid.bars, grid.steps_per_bar))
    idea_bars = 2 if grid.bars >= 4 else 1
    # Bars after the idea reuse its rhythm (with the second half re-drawn) and contour.
    notes: list[Note] = []
    degree = scale.degree_of(_nearest_pitch(scale.tonic, (low + high) // 2, low, high))[0]
    degree_low, degree_high = scale.degree_of(low)[0] + 1, scale.degree_of(high)[0] - 1
    contour: dict[tuple[int, int], int] = {}
    for bar in range(grid.bars):
        source = bar % idea_bars
        repeat = bar >= idea_bars
        steps = onsets[source] if repeat and bar < grid.bars - 1 else onsets[bar]
        tones = scale.chord_tones(chords[bar])
        shift = 0
        if repeat:
            # Sequence: move the idea with the harmony (root motion in scale steps).
            shift = chords[bar] - chords[source]
            shift = (shift + 3) % 7 - 3
        for i, step in enumerate(steps):
            end_step = steps[i + 1] if i + 1 < len(steps) else grid.steps_per_bar
            duration = (end_step - step) * GRID_BEATS
            strong = grid.strength(step) >= 2
            if repeat and (source, step) in contour and bar < grid.bars - 1:
                degree = contour[(source, step)] + shift
            else:
                u = u_step[bar, step]
                # Mostly steps, some repeats and leaps, slightly rising.
                move = (
                    -2 if u < 0.12 else -1 if u < 0.42 else 0 if u < 0.52 else 1 if u < 0.85 else 2
                )
                degree += move
                if strong:
                    degree = _snap_to_chord(degree, scale, tones)
            if bar == grid.bars - 1 and i == len(steps) - 1:
                degree = _snap_to_chord(degree, scale, tones)
                duration = max(duration, 1.0)
            if degree < degree_low:
                degree += 2 if degree + 2 <= degree_high else 0
            if degree > degree_high:
                degree -= 2 if degree - 2 >= degree_low else 0
            degree = min(degree_high, max(degree_low, degree))
            if not repeat:
                contour[(source, step)] = degree
            vel = (94 if arousal > 0 else 72) + (8 if strong else 0) + u_vel[bar, step]
            notes.append(
                _note("lead", scale.from_degree(degree), grid.beat(bar, step), duration, vel)
            )
    return notes


def _snap_to_chord(degree: int, scale: _Scale, tones: tuple[int, ...]) -> int:
    """The nearest diatonic degree whose pitch class is a chord tone."""
    for offset in (0, -1, 1, -2, 2, -3, 3):
        if scale.from_degree(degree + offset) % 12 in tones:
            return degree + offset
    return degree


def _develop_motif(
    motif: tuple[Note, ...],
    grid: _Grid,
    scale: _Scale,
    chords: list[int],
    valence: int,
    arousal: int,
    rng: np.random.Generator,
) -> list[Note]:
    """The designer's motif stated, sequenced, varied and inverted across the loop.

    Segments are as long as the motif rounded up to half a bar. The first is the
    statement; the following ones cycle through a diatonic sequence, a rhythmic
    variation, an inversion and a fragment, and the last one restates the motif so
    the loop returns home.
    """
    low, high = _register("lead", valence, arousal)
    ordered = sorted(motif, key=lambda n: n.start_beats)
    origin = ordered[0].start_beats
    # Move the motif by octaves into the lead's register; intervals stay as written.
    mean_pitch = sum(n.pitch for n in ordered) / len(ordered)
    octave_shift = 12 * round(((low + high) / 2 - mean_pitch) / 12)
    cells = [
        (n.start_beats - origin, n.duration_beats, n.pitch + octave_shift, n.velocity)
        for n in ordered
    ]
    span = max(start + dur for start, dur, _, _ in cells)
    half_bar = grid.bar_beats / 2
    segment_beats = max(half_bar, np.ceil(span / half_bar - 1e-9) * half_bar)
    # The last segment may be cut short by the loop end.
    segments = max(1, int(np.ceil(grid.loop_beats / segment_beats - 1e-9)))
    variations = ["sequence", "rhythm", "inversion", "fragment"]
    offset = int(rng.integers(len(variations)))
    notes: list[Note] = []
    for seg in range(segments):
        seg_start = seg * segment_beats
        bar = min(grid.bars - 1, int(seg_start // grid.bar_beats))
        if seg == 0 or (seg == segments - 1 and segments > 2):
            kind = "statement"
        else:
            kind = variations[(offset + seg - 1) % len(variations)]
        for start, dur, pitch, vel in _vary(cells, kind, scale, chords, bar, segment_beats, rng):
            if seg_start + start < grid.loop_beats:
                pitch = _fold_into(pitch, low - 5, high + 5)
                notes.append(_note("lead", pitch, seg_start + start, dur, vel))
    return notes


def _vary(
    cells: list[tuple[float, float, int, int]],
    kind: str,
    scale: _Scale,
    chords: list[int],
    bar: int,
    segment_beats: float,
    rng: np.random.Generator,
) -> list[tuple[float, float, int, int]]:
    if kind == "statement":
        return cells
    if kind == "sequence":
        # Diatonic transposition following the harmony (or a step up on the tonic).
        steps = (chords[bar] - chords[0] + 3) % 7 - 3 or 1
        return [(s, d, _transpose(p, steps, scale), v) for s, d, p, v in cells]
    if kind == "inversion":
        axis = scale.degree_of(cells[0][2])[0]
        inverted = []
        for s, d, p, v in cells:
            deg, rem = scale.degree_of(p)
            inverted.append((s, d, scale.from_degree(2 * axis - deg, rem), v))
        return inverted
    if kind == "rhythm":
        # Same pitches, durations re-cut: long notes split, a dotted feel on pairs.
        cells = list(cells)
        varied = []
        for i, (s, d, p, v) in enumerate(cells):
            if d >= 1.0 and rng.random() < 0.7:
                varied += [(s, d / 2, p, v), (s + d / 2, d / 2, p, v - 8)]
            elif i % 2 == 0 and i + 1 < len(cells) and d >= 0.5:
                nxt = cells[i + 1][0]
                varied.append((s, (nxt - s) * 1.5, p, v))
                cells[i + 1] = (s + (nxt - s) * 1.5, cells[i + 1][1], *cells[i + 1][2:])
            else:
                varied.append((s, d, p, v))
        return [c for c in varied if c[0] < segment_beats]
    # Fragment: the head of the motif, twice.
    head_len = max(1, len(cells) // 2)
    head = cells[:head_len]
    head_span = segment_beats / 2
    return [(s, d, p, v) for s, d, p, v in head if s < head_span] + [
        (s + head_span, d, _transpose(p, -1, scale), v - 6) for s, d, p, v in head if s < head_span
    ]


def _transpose(pitch: int, steps: int, scale: _Scale) -> int:
    degree, remainder = scale.degree_of(pitch)
    return scale.from_degree(degree + steps, remainder)


def _fold_into(pitch: int, low: int, high: int) -> int:
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch
