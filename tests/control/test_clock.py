"""The musical clock with made-up frames: beat lengths, exit points, entries, due beats."""

from __future__ import annotations

import pytest

from engine.control import clock
from engine.control.clock import Main
from tests.control.fakes import CALM, FIGHT, LOST, RATE, WIN, FakeClip

LOOP = 4 * 4 * 24_000  # calm: 4 bars of 4/4 at 120 bpm


def grid(state=CALM, anchor: int | None = 1_000, frames: int = LOOP) -> Main:
    return Main(state, FakeClip(frames), layer=None, anchor=anchor)


@pytest.mark.parametrize(
    ("state", "frames"),
    [
        (CALM, 24_000),  # 120 bpm, a quarter note
        (FIGHT, 16_000),  # 90 bpm in 6/8: the beat is an eighth
        (LOST, 48_000),  # 60 bpm, 3/4
    ],
)
def test_beat_frames(state, frames) -> None:
    assert clock.beat_frames(state, RATE) == frames


@pytest.mark.parametrize(
    ("exit_", "earliest", "point"),
    [
        ("immediate", 5_000, None),
        ("none", 5_000, None),
        ("next_beat", 1_000, 1_000),  # on the beat: that beat
        ("next_beat", 1_001, 25_000),
        ("beat", 24_999, 25_000),
        ("next_bar", 1_001, 97_000),
        ("bar", 97_000, 97_000),
        ("loop_end", 2_000, 1_000 + LOOP),
        ("drop", 2_000, 1_000 + 6 * 24_000),  # a cue: its beat, once per loop
        ("drop", 1_000 + 6 * 24_000 + 1, 1_000 + 6 * 24_000 + LOOP),
        ("unknown_cue", 2_000, 1_000 + LOOP),  # (the validator refuses one; the loop start)
    ],
)
def test_grid_point(exit_, earliest, point) -> None:
    assert clock.grid_point(exit_, earliest, grid(), RATE) == point


def test_grid_point_in_six_eight() -> None:
    bar = 6 * 16_000
    assert clock.grid_point("next_bar", 1, grid(FIGHT, anchor=0, frames=2 * bar), RATE) == bar


@pytest.mark.parametrize("clock_", [None, grid(anchor=None)])
def test_no_grid_no_point(clock_) -> None:
    assert clock.grid_point("next_bar", 10, clock_, RATE) is None


@pytest.mark.parametrize(
    ("switch", "frame", "step", "moved"),
    [(1_000, 1_000, 24_000, 1_000), (1_000, 1_001, 24_000, 25_000), (0, 100, 96_000.5, 96_000)],
)
def test_on_grid_after(switch, frame, step, moved) -> None:
    assert clock.on_grid_after(switch, frame, step) == moved


@pytest.mark.parametrize(
    ("entry", "into", "offset"),
    [
        ("same_position", 400_000, 400_000 - LOOP),  # the same place in the loop
        ("same_position", 100, 100),
        ("same_beat", 30_000, 8_000),  # a quarter of a 120 bpm beat -> of a 90 bpm beat
        ("same_beat", 48_000, 0),
    ],
)
def test_entry_offset(entry, into, offset) -> None:
    assert clock.entry_offset(entry, into, LOOP, 24_000.0, 32_000.0) == offset


@pytest.mark.parametrize(
    ("done", "horizon", "beats"),
    [
        (-1, 50_000, [(0, 1), (24_000, 2), (48_000, 3)]),
        (24_000, 100_000, [(48_000, 3), (72_000, 4), (96_000, 1)]),
        (24_000, 47_999, []),
        (96_000, 96_000, []),
    ],
)
def test_beats_due(done, horizon, beats) -> None:
    assert list(clock.beats_due(0, 24_000.0, 4, done, horizon)) == beats


def test_position_and_bar_and_beat() -> None:
    state, beats = clock.position(grid(), 1_000 + 5.5 * 24_000, RATE)
    assert (state, beats) == (CALM, 5.5)
    assert clock.bar_and_beat(state, beats, RATE) == {
        "tempo": 120,
        "bar": 2,
        "beat": 2,
        "next_beat_ms": 250.0,
        "next_bar_ms": 1250.0,
    }
    assert clock.position(grid(anchor=None), 5_000, RATE) is None


@pytest.mark.parametrize(("state", "loops"), [(CALM, CALM.repeats), (WIN, 1)])
def test_a_placed_loop_is_due_for_a_fresh_one_after_its_repeats(state, loops) -> None:
    main = grid(state, anchor=None, frames=1_000)
    main.place(500)
    assert (main.anchor, main.swap_at) == (500, 500 + loops * 1_000)
