"""The wet bus shared out among the stems (engine/making/wetbus.py), on known signals."""

from __future__ import annotations

import numpy as np

from engine.making.wetbus import ENERGY_BLOCK_FRAMES, EnergyShares

RATE = 48_000
SEGMENT = 8 * ENERGY_BLOCK_FRAMES


def _signals(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three parts' dry pairs (the second silent after the first quarter) and a wet pair."""
    rng = np.random.default_rng(seed)
    dry = (
        rng.standard_normal((3, 2, frames)).astype(np.float32)
        * np.array([1.0, 0.5, 0.1], np.float32)[:, None, None]
    )
    dry[1, :, frames // 4 :] = 0.0
    wet = rng.standard_normal((2, frames)).astype(np.float32) * 0.3
    return dry, wet


def test_the_wet_bus_is_shared_out_whole_and_follows_each_parts_energy() -> None:
    frames = 100 * SEGMENT + 100  # 4.3 s, a partial block at the end, as at the end of a render
    dry, wet = _signals(frames)
    stems = dry.copy()
    shares = EnergyShares(3, RATE, SEGMENT)
    for start in range(0, frames, SEGMENT):
        shares.add_wet(stems[:, :, start : start + SEGMENT], wet[:, start : start + SEGMENT])
    added = stems - dry
    np.testing.assert_allclose(added.sum(axis=0), wet, atol=1e-5)  # nothing lost or doubled
    # Over the last second the second part is long silent: its share has all but gone, and
    # the loud first part takes most of the rest.
    last = slice(frames - RATE, frames)
    wet_energy = np.square(wet[:, last]).sum()
    taken = np.square(added[:, :, last]).sum(axis=(1, 2)) / wet_energy
    assert taken[1] < 0.01 and taken[0] > 0.8


def test_whole_segments_at_once_share_as_one_segment_at_a_time() -> None:
    frames = 12 * SEGMENT + 300
    dry, wet = _signals(frames, seed=1)
    one_by_one, at_once = dry.copy(), dry.copy()
    a, b = EnergyShares(3, RATE, SEGMENT), EnergyShares(3, RATE, SEGMENT)
    levels = []
    for start in range(0, frames, SEGMENT):
        stop = start + SEGMENT
        levels += a.add_wet(one_by_one[:, :, start:stop], wet[:, start:stop])
    whole = frames // SEGMENT * SEGMENT
    both = b.add_wet(at_once[:, :, :whole], wet[:, :whole])
    both += b.add_wet(at_once[:, :, whole:], wet[:, whole:])
    np.testing.assert_array_equal(one_by_one, at_once)
    assert both == levels
