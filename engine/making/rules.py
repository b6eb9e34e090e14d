"""The rule-based generator: scale- and chord-aware loops without a model.

Segue falls back to it when the ONNX model is missing, and it writes bridges and
tests' loops in a few milliseconds. The mood's (valence, arousal) quadrant drives
the music: arousal sets note density, rhythm, drum energy and register; valence
picks the chord progression and its colour. `spec.density` scales every part, and
each part draws its rhythm from its own random stream before its pitches, so for
one seed a denser loop holds the notes of a sparser one and then some.

All times are in quarter-note beats from the loop start, on a sixteenth grid (the grid,
scale, rhythms, registers and the lead's melody are in engine/making/lines.py).
Every note starts inside the loop; the last notes may ring past its end (the
synth wraps them onto the start).
"""

from __future__ import annotations

import numpy as np

from engine.making.lines import (
    GRID_BEATS,
    REGISTERS,
    _develop_motif,
    _fold_into,
    _Grid,
    _is_backbeat,
    _melody,
    _nearest_pitch,
    _note,
    _register,
    _rhythm,
    _Scale,
    _voice_lead,
)
from engine.score.music import MOODS, Loop, LoopSpec, Note, scale_of

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


def _progression(mode: str, valence: int, bars: int, rng: np.random.Generator) -> list[int]:
    """One chord root (scale degree) per bar, ending on the progression's turnaround."""
    options = PROGRESSIONS[(mode, valence)]
    prog = options[int(rng.integers(len(options)))]
    chords = [prog[i % len(prog)] for i in range(bars)]
    if bars > 1:
        chords[-1] = prog[-1]
    return chords


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
