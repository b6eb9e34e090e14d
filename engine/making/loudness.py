"""Loudness of periodic audio: ITU-R BS.1770 integrated loudness (LUFS), measured round the loop.

A clip is periodic, so its 400 ms gating blocks wrap from the end to the start instead of
stopping short (a short loop needs no tiling). K-weighting is linear: the synth weights each
stem once and measures any gain-weighted sum of them without filtering again.
Worker process only.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from engine.making._sosfilt import sosfilt

BLOCK_SECONDS = 0.4  # BS.1770 gating block
STEP_SECONDS = 0.1  # 75 % overlap
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
# The synth measures loudness on every second sample (24 kHz at 48 kHz) with the K-weighting
# designed for that rate: half the filtering, its largest cost after FluidSynth. The music
# above 12 kHz folds below it, where the weighting's shelf gives it nearly the same gain
# (+3.5 to +4 dB): on rendered loops the full-rate meter reads within 0.04 LU of it, on white
# noise 0.17 LU. Samples are dropped, not filtered first: a steady tone at 12 kHz itself is read
# by its phase (a lone 12-kHz sine can read many dB off); the limiter still bounds the peak.
MEASURE_STRIDE = 2


def k_weighting(sample_rate: int) -> np.ndarray:
    """BS.1770's two biquads (high shelf, then high-pass) as second-order sections, for any
    rate (the bilinear designs libebur128 uses; exact at 48 kHz)."""
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sample_rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = [(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0,
             (vh - vb * k / q + k * k) / a0, 1.0, 2.0 * (k * k - 1.0) / a0,
             (1.0 - k / q + k * k) / a0]  # fmt: skip
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sample_rate)
    a0 = 1.0 + k / q + k * k
    high_pass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    return np.array([shelf, high_pass])


def weighted(planar: np.ndarray, sos: np.ndarray) -> np.ndarray:
    """K-weighted copy of planar audio (..., frames), float32."""
    return sosfilt(sos, planar, axis=-1).astype(np.float32, copy=False)


@functools.lru_cache(maxsize=8)
def _gating(frames: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first frame of each 100 ms step (edges spread evenly), the steps of each 400 ms
    block (4 consecutive steps, wrapping round the loop), each block's length in frames)."""
    steps = max(1, round(frames / round(STEP_SECONDS * sample_rate)))
    edges = np.linspace(0, frames, steps + 1).astype(np.int64)
    window = int(BLOCK_SECONDS / STEP_SECONDS)
    idx = (np.arange(steps)[:, None] + np.arange(window)[None, :]) % steps
    block_lengths = np.maximum(np.diff(edges)[idx].sum(axis=1), 1)
    for array in (edges, idx, block_lengths):
        array.flags.writeable = False
    return edges[:-1], idx, block_lengths


def integrated_lufs(weighted_audio: np.ndarray, sample_rate: int) -> float:
    """Gated loudness of periodic K-weighted planar (channels, frames) audio; -inf when
    silent."""
    frames = weighted_audio.shape[-1]
    if frames == 0:
        return float("-inf")
    starts, idx, block_lengths = _gating(frames, sample_rate)
    # Mean square per 100 ms step, summed over channels (L, R weight 1).
    power = np.einsum("ij,ij->j", weighted_audio, weighted_audio)
    sums = np.add.reduceat(power, starts).astype(np.float64)
    z = sums[idx].sum(axis=1) / block_lengths
    loudness = -0.691 + 10.0 * np.log10(np.maximum(z, 1e-30))
    z = z[loudness > ABSOLUTE_GATE_LUFS]
    if z.size == 0:
        return float("-inf")
    relative = -0.691 + 10.0 * math.log10(z.mean()) + RELATIVE_GATE_LU
    z = z[-0.691 + 10.0 * np.log10(z) > relative]
    return float(-0.691 + 10.0 * math.log10(z.mean()))
