"""The musical clock: where beats, bars, loop ends and cues fall, in sample frames.

Pure: no mixer, no pool, no I/O. The loop that carries the state (`Main`) sets the grid from
the frame its audio starts at (its anchor); every function here answers from that anchor, so
it can be tested with made-up frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from engine.audio.mixer import Layer
from engine.score.graph import State
from engine.score.music import Clip
from engine.score.units import quarters_per_beat

BEAT_LOOKAHEAD_BLOCKS = 2  # beat callbacks are sent this far ahead of the audio


@dataclass
class Main:
    """The loop that carries the state (and the musical clock)."""

    state: State
    clip: Clip
    layer: Layer
    anchor: int | None = None  # absolute frame of audio[0], once known
    swap_at: int | None = None  # absolute frame of the next fresh loop (or one-shot exit)

    def place(self, anchor: int) -> None:
        """Its audio starts at `anchor`: a fresh loop is due after its repeats (once: one)."""
        self.anchor = anchor
        self.swap_at = anchor + self.clip.frames * (1 if self.state.once else self.state.repeats)


def beat_frames(state: State, sample_rate: int) -> float:
    """Frames per meter beat (a dotted quarter in 6/8 counts as its beat unit says)."""
    return 60.0 / state.tempo_bpm * quarters_per_beat(state.meter) * sample_rate


def grid_point(exit_: str, earliest: int, clock: Main | None, sample_rate: int) -> int | None:
    """The first exit point of kind `exit_` at or after `earliest` (absolute frame); None for
    `immediate`/`none`, or while the grid has no anchor yet."""
    if exit_ in ("immediate", "none") or clock is None or clock.anchor is None:
        return None
    state = clock.state
    beat = beat_frames(state, sample_rate)
    if exit_ in ("next_beat", "beat"):
        step, phase = beat, 0.0
    elif exit_ in ("next_bar", "bar"):
        step, phase = beat * state.meter.beats_per_bar, 0.0
    elif exit_ == "loop_end":
        step, phase = clock.clip.frames, 0.0
    else:  # a named cue: once per loop, at its beat
        step, phase = clock.clip.frames, (state.cue(exit_) or 0.0) * beat
    count = math.ceil((earliest - clock.anchor - phase) / step)
    return clock.anchor + round(phase + count * step)


def on_grid_after(switch: int, frame: int, step: float) -> int:
    """`frame` moved onto a grid of `step` frames that starts at `switch`."""
    return switch + round(math.ceil((frame - switch) / step) * step)


def entry_offset(entry: str, into: int, loop_frames: int, old_beat: float, new_beat: float) -> int:
    """Where the incoming loop starts playing from, `into` frames after the old grid's anchor:
    the same position in the loop, or the same fraction of a beat."""
    if entry == "same_position":
        return into % loop_frames
    return round((into % old_beat) / old_beat * new_beat)


def beats_due(
    anchor: int, beat: float, beats_per_bar: int, done: int, horizon: int
) -> Iterator[tuple[int, int]]:
    """(frame, beat in bar from 1) of every beat after frame `done` up to `horizon`."""
    k = max(0, math.ceil((done + 1 - anchor) / beat))
    while True:
        frame = anchor + round(k * beat)
        if frame > horizon:
            return
        if frame > done:
            yield frame, k % beats_per_bar + 1
            done = frame
        k += 1


def position(clock: Main | None, frame: int, sample_rate: int) -> tuple[State, float] | None:
    """(state of the grid, beats since the grid's anchor) at `frame`."""
    if clock is None or clock.anchor is None:
        return None
    return clock.state, (frame - clock.anchor) / beat_frames(clock.state, sample_rate)


def bar_and_beat(state: State, beats: float, sample_rate: int) -> dict:
    """Bar and beat (from 1) `beats` after the anchor, and the milliseconds to the next ones."""
    per_bar = state.meter.beats_per_bar
    beat_ms = beat_frames(state, sample_rate) / sample_rate * 1000
    return {
        "tempo": state.tempo_bpm,
        "bar": int(beats // per_bar) + 1,
        "beat": int(beats % per_bar) + 1,
        "next_beat_ms": round((math.ceil(beats) - beats) * beat_ms, 2),
        "next_bar_ms": round((math.ceil(beats / per_bar) * per_bar - beats) * beat_ms, 2),
    }
