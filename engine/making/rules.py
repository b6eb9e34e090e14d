"""The rule-based generator: scale- and chord-aware loops without a model.

Segue falls back to it when the ONNX model is missing, and it writes bridges and
tests' loops in a few milliseconds. The mood's (valence, arousal) quadrant drives
the music: arousal sets note density, rhythm, drum energy and register; valence
picks the chord progression and its colour. `spec.density` scales every part, and
each part draws its rhythm from its own random stream before its pitches, so for
one seed a denser loop holds the notes of a sparser one and then some.

All times are in quarter-note beats from the loop start, on a sixteenth grid.
Every note starts inside the loop; the last notes may ring past its end (the
synth wraps them onto the start).
"""

from __future__ import annotations

import numpy as np

from engine.score.music import MOODS, Loop, LoopSpec, Meter, Note, scale_of
from engine.score.units import quarters_per_bar, quarters_per_beat

GRID_BEATS = 0.25  # sixteenth notes

# Chord progressions as scale-degree indices (0 = tonic), one chord per bar.
# Each ends on a chord that leads back to the first, so the loop point is a cadence.
PROGRESSIONS: dict[tuple[str, int], tuple[tuple[int, ...], ...]] = {
    ("major", 1): ((0, 4, 5, 3), (0, 3, 4, 3), (0, 5, 3, 4), (0, 3, 0, 4)),
    ("major", -1): ((5, 3, 0, 4), (0, 5, 2, 3), (5, 2, 3, 4), (0, 2, 5, 4)),
    ("minor", 1): ((0, 5, 2, 6), (0, 3, 6, 2), (0, 5, 3, 6), (0, 2, 5, 6)),
    ("minor", -1): ((0, 3, 4, 0), (0, 5, 3, 4), (0, 6, 5, 6), (0, 1, 4, 0)),
}

DENSITY_SCALE = {"low": 0.55, "medium": 1.0, "high": 1.6}

# GM percussion keys.
KICK, SIDE_STICK, SNARE, CLOSED_HAT, PEDAL_HAT, OPEN_HAT = 36, 37, 38, 42, 44, 46
LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE, TAMBOURINE = 45, 47, 50, 49, 51, 54

# Register (lowest, highest MIDI note) per part and arousal.
REGISTERS = {
    ("bass", 1): (33, 52),
    ("bass", -1): (28, 48),
    ("pad", 1): (55, 76),
    ("pad", -1): (48, 72),
    ("lead", 1): (67, 88),
    ("lead", -1): (60, 81),
}


class RuleGenerator:
    """Writes a `Loop` from a `LoopSpec` by rule; deterministic for `spec.seed`."""

    name = "rules"

    def generate(self, spec: LoopSpec) -> Loop:
        valence, arousal = MOODS[spec.mood]
        grid = _Grid(spec.meter, spec.bars)
        scale = _Scale(spec.tonic, scale_of(spec.mode))
        prog_rng = np.random.default_rng([spec.seed, 0])
        chords = _progression(spec.mode, valence, spec.bars, prog_rng)
        density = DENSITY_SCALE.get(spec.density, 1.0)
        notes: list[Note] = []
        for part_index, (part, _instrument) in enumerate(spec.instruments):
            # Own stream per part: adding a part leaves the others unchanged.
            rng = np.random.default_rng([spec.seed, 1 + part_index, _PART_SALT[part]])
            if part == "drums":
                notes += _drums(grid, valence, arousal, density, rng)
            elif part == "bass":
                notes += _bass(grid, scale, chords, arousal, density, rng)
            elif part == "pad":
                notes += _pad(grid, scale, chords, valence, arousal, density, rng)
            elif part == "lead":
                if spec.motif:
                    notes += _develop_motif(spec.motif, grid, scale, chords, valence, arousal, rng)
                else:
                    notes += _melody(grid, scale, chords, valence, arousal, density, rng)
        notes.sort(key=lambda n: (n.start_beats, n.part, n.pitch))
        return Loop(spec, tuple(notes), generator=self.name)


_PART_SALT = {"drums": 11, "bass": 23, "pad": 37, "lead": 41}


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


def _progression(mode: str, valence: int, bars: int, rng: np.random.Generator) -> list[int]:
    """One chord root (scale degree) per bar, ending on the progression's turnaround."""
    options = PROGRESSIONS[(mode, valence)]
    prog = options[int(rng.integers(len(options)))]
    chords = [prog[i % len(prog)] for i in range(bars)]
    if bars > 1:
        chords[-1] = prog[-1]
    return chords


def _note(part: str, pitch: int, start: float, duration: float, velocity: float) -> Note:
    return Note(part, int(pitch), float(start), float(duration), min(127, max(1, int(velocity))))


def _drums(
    grid: _Grid, valence: int, arousal: int, density: float, rng: np.random.Generator
) -> list[Note]:
    notes: list[Note] = []
    energetic = arousal > 0
    base_vel = 100 if energetic else 68
    # Hats: pulses when sparse and calm, eighths, sixteenths when dense and energetic.
    if energetic:
        hat_every = 1 if density >= 1.2 else 2
    else:
        hat_every = 2 if density >= 1.2 else grid.steps_per_pulse
    hat_key = CLOSED_HAT if energetic else (RIDE if density >= 1.2 else PEDAL_HAT)
    backbeat_key = SNARE if energetic else SIDE_STICK
    extra_kick_p = (0.25 if energetic else 0.08) * density
    ghost_p = (0.18 if energetic else 0.06) * density
    for bar in range(grid.bars):
        u_kick = rng.random(grid.steps_per_bar)
        u_ghost = rng.random(grid.steps_per_bar)
        u_vel = rng.normal(0.0, 6.0, grid.steps_per_bar)
        fill = energetic and density >= 1.0 and bar == grid.bars - 1 and grid.bars > 1
        for step in range(grid.steps_per_bar):
            start = grid.beat(bar, step)
            strength = grid.strength(step)
            pulse, on_pulse = divmod(step, grid.steps_per_pulse)
            on_pulse = on_pulse == 0
            if fill and step >= grid.steps_per_bar - grid.steps_per_pulse:
                # A tom run down into the loop point.
                toms = (HIGH_TOM, MID_TOM, LOW_TOM, LOW_TOM)
                k = step - (grid.steps_per_bar - grid.steps_per_pulse)
                if step % 2 == 0 or density > 1.2:
                    key = toms[min(3, k * 4 // grid.steps_per_pulse)]
                    notes.append(_note("drums", key, start, 0.25, base_vel + 5 + u_vel[step]))
                continue
            if step == 0 and bar == 0 and energetic and density >= 1.0:
                notes.append(_note("drums", CRASH, start, 1.0, base_vel + u_vel[step]))
            kick = on_pulse and (pulse == 0 or (grid.pulses_per_bar == 4 and pulse == 2))
            if grid.pulses_per_bar == 2 and energetic and on_pulse and pulse == 1:
                kick = density >= 1.0
            if not kick and strength <= 1 and u_kick[step] < extra_kick_p * 0.5:
                kick = True
            if kick:
                notes.append(_note("drums", KICK, start, 0.25, base_vel + 10 + u_vel[step]))
            backbeat = on_pulse and _is_backbeat(pulse, grid.pulses_per_bar)
            if backbeat and (energetic or density >= 0.8 or pulse == grid.pulses_per_bar - 1):
                notes.append(_note("drums", backbeat_key, start, 0.25, base_vel + u_vel[step]))
            elif not on_pulse and strength == 0 and u_ghost[step] < ghost_p:
                notes.append(_note("drums", SNARE, start, 0.25, base_vel * 0.45 + u_vel[step]))
            if energetic and valence < 0 and step % 2 == 1 and step % 4 == 3:
                # Tense: a low-tom pulse pushing into each beat.
                notes.append(_note("drums", LOW_TOM, start, 0.25, base_vel - 15 + u_vel[step]))
            if valence > 0 and energetic and backbeat and density >= 1.0:
                notes.append(_note("drums", TAMBOURINE, start, 0.25, base_vel - 25 + u_vel[step]))
            if step % hat_every == 0:
                accent = 12 if strength >= 2 else 0
                key = hat_key
                if energetic and step == grid.steps_per_bar - 2 and density >= 1.0:
                    key = OPEN_HAT
                notes.append(_note("drums", key, start, 0.25, base_vel - 22 + accent + u_vel[step]))
    return notes


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


def _bass(
    grid: _Grid,
    scale: _Scale,
    chords: list[int],
    arousal: int,
    density: float,
    rng: np.random.Generator,
) -> list[Note]:
    low, high = REGISTERS[("bass", arousal)]
    rate = (0.5 if arousal > 0 else 0.22) * density
    onsets = _rhythm(grid, rate, rng, strong_bias=0.5)
    u_pick = rng.random((grid.bars, grid.steps_per_bar))
    u_vel = rng.normal(0.0, 5.0, (grid.bars, grid.steps_per_bar))
    notes: list[Note] = []
    for bar, steps in enumerate(onsets):
        root_pc = scale.pitch(chords[bar]) % 12
        root = _nearest_pitch(root_pc, (low + high) // 2 - 5, low, high)
        fifth = _nearest_pitch(scale.pitch(chords[bar] + 4) % 12, root + 7, low, high)
        next_root = scale.pitch(chords[(bar + 1) % len(chords)]) % 12
        for i, step in enumerate(steps):
            end_step = steps[i + 1] if i + 1 < len(steps) else grid.steps_per_bar
            duration = (end_step - step) * GRID_BEATS * (0.9 if arousal > 0 else 1.0)
            u = u_pick[bar, step]
            if step == 0:
                pitch = root
            elif step == steps[-1] and step > grid.steps_per_bar // 2 and u < 0.5:
                # Step into the next chord's root from a scale neighbour.
                target = _nearest_pitch(next_root, root, low, high)
                pitch = scale.from_degree(scale.degree_of(target)[0] + (1 if u < 0.25 else -1))
                pitch = _fold_into(pitch, low, high)
            elif u < 0.45:
                pitch = root
            elif u < 0.75:
                pitch = fifth
            elif u < 0.9:
                pitch = root + 12 if root + 12 <= high else root
            else:
                third = scale.pitch(chords[bar] + 2) % 12
                pitch = _nearest_pitch(third, root + 4, low, high)
            vel = (96 if arousal > 0 else 78) + (8 if grid.strength(step) >= 2 else 0)
            notes.append(
                _note("bass", pitch, grid.beat(bar, step), duration, vel + u_vel[bar, step])
            )
    return notes


def _nearest_pitch(pitch_class: int, target: int, low: int, high: int) -> int:
    candidates = [p for p in range(low, high + 1) if p % 12 == pitch_class]
    return min(candidates, key=lambda p: abs(p - target))


def _pad(
    grid: _Grid,
    scale: _Scale,
    chords: list[int],
    valence: int,
    arousal: int,
    density: float,
    rng: np.random.Generator,
) -> list[Note]:
    low, high = _register("pad", valence, arousal)
    sevenths = valence > 0 and arousal < 0  # calm and dreamy: soft seventh chords
    # Sustained chords; restruck on each pulse (or half bar) when dense and energetic.
    strikes_per_bar = 1
    if density * (1.6 if arousal > 0 else 0.8) >= 1.5:
        strikes_per_bar = grid.pulses_per_bar
    elif density * (1.6 if arousal > 0 else 0.8) >= 0.9 and grid.pulses_per_bar % 2 == 0:
        strikes_per_bar = 2
    strike_beats = grid.bar_beats / strikes_per_bar
    u_vel = rng.normal(0.0, 4.0, (grid.bars, strikes_per_bar))
    voicing: list[int] = []
    notes: list[Note] = []
    for bar in range(grid.bars):
        tones = scale.chord_tones(chords[bar], sevenths)
        voicing = _voice_lead(voicing, tones, low, high)
        for k in range(strikes_per_bar):
            start = bar * grid.bar_beats + k * strike_beats
            # Legato on sustained pads; detached stabs when struck often.
            duration = strike_beats * (1.0 if strikes_per_bar <= 2 else 0.7)
            vel = (84 if arousal > 0 else 66) + (6 if k == 0 else 0) + u_vel[bar, k]
            notes += [_note("pad", p, start, duration, vel) for p in voicing]
    return notes


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
