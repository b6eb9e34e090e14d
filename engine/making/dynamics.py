"""The clip's dynamics after rendering: a gentle compressor on the mix's RMS, and a look-ahead
peak limiter, both as gain curves the synth applies to every stem alike."""

from __future__ import annotations

import math

import numpy as np

COMPRESSOR_BLOCK_FRAMES = 480  # 10 ms RMS detector
COMPRESSOR_THRESHOLD_DB = -21.0  # RMS, on the mix at the target loudness
COMPRESSOR_RATIO = 2.0
COMPRESSOR_KNEE_DB = 6.0
COMPRESSOR_ATTACK_SECONDS = 0.010
COMPRESSOR_RELEASE_SECONDS = 0.200
LIMITER_BLOCK_FRAMES = 96  # 2 ms gain blocks
LIMITER_HALF_WIDTH_BLOCKS = 5  # ~10 ms attack and release around a peak


def _periodic_interp(block_values: np.ndarray, block: int, frames: int) -> np.ndarray:
    """Per-frame values (float32), linear between block centres, wrapping round the loop."""
    blocks = block_values.shape[0]
    starts = np.arange(blocks) * block
    centres = starts + (np.minimum(block, frames - starts) - 1) / 2.0
    xp = np.concatenate(([centres[-1] - frames], centres, [centres[0] + frames]))
    fp = np.concatenate(([block_values[-1]], block_values, [block_values[0]]))
    out = np.empty(frames, np.float32)
    # Between the centres of whole blocks, `block` apart, every segment's frames sit at the
    # same fractions of it: one outer product (np.interp's search per frame costs 5x more).
    first = math.ceil(centres[0])
    segments = max(0, frames // block - 1)
    inner = slice(first, first + segments * block)
    if segments:
        t = ((first - centres[0] + np.arange(block)) / block).astype(np.float32)
        low = block_values[:segments, None].astype(np.float32)
        grid = out[inner].reshape(segments, block)
        np.multiply(block_values[1 : segments + 1, None].astype(np.float32) - low, t, out=grid)
        grid += low
    # Before the first centre (wrapping from the last) and after the last whole segment.
    for edge in (np.arange(0, inner.start), np.arange(inner.stop, frames)):
        out[edge] = np.interp(edge, xp, fp)
    return out


def _compressor_gain(mix: np.ndarray, sample_rate: int, gain: float = 1.0) -> np.ndarray:
    """A gentle bus compressor's gain per frame for planar `mix` (channels, frames) times
    `gain`: RMS detector, soft knee, attack and release, run twice round the loop so the gain
    at its start follows on from its end."""
    frames = mix.shape[-1]
    block = COMPRESSOR_BLOCK_FRAMES
    blocks = -(-frames // block)
    whole = frames // block
    power = np.zeros(blocks)  # mean square per block, over frames and channels
    if whole:
        head = mix[:, : whole * block].reshape(mix.shape[0], whole, block)
        power[:whole] = np.einsum("cbk,cbk->b", head, head) / (mix.shape[0] * block)
    if blocks > whole:
        rest = mix[:, whole * block :]
        power[whole] = np.einsum("cf,cf->", rest, rest) / rest.size
    power *= float(gain) ** 2
    level_db = 10.0 * np.log10(np.maximum(power, 1e-12))
    over = level_db - COMPRESSOR_THRESHOLD_DB
    knee = COMPRESSOR_KNEE_DB
    slope = 1.0 - 1.0 / COMPRESSOR_RATIO
    target = np.where(over <= -knee / 2, 0.0,
                      np.where(over >= knee / 2, -slope * over,
                               -slope * (over + knee / 2) ** 2 / (2 * knee)))  # fmt: skip
    block_seconds = block / sample_rate
    attack = 1.0 - math.exp(-block_seconds / COMPRESSOR_ATTACK_SECONDS)
    release = 1.0 - math.exp(-block_seconds / COMPRESSOR_RELEASE_SECONDS)
    wants = target.tolist()
    current = 0.0
    for want in wants:  # the first time round only sets where the second starts
        current += (want - current) * (attack if want < current else release)
    gain_db = []
    for want in wants:
        current += (want - current) * (attack if want < current else release)
        gain_db.append(current)
    return _periodic_interp(10.0 ** (np.array(gain_db) / 20.0), block, frames)


def _limit_gain(mix: np.ndarray, ceiling: float) -> np.ndarray | None:
    """A smooth periodic gain per frame that keeps planar mix (2, frames) at or below
    `ceiling`, or None when none is needed.

    The per-block gain is a circular minimum over neighbouring blocks, then a
    circular moving average no wider than that minimum, so the gain never exceeds
    what any sample needs; linear interpolation between block centres keeps it
    smooth.
    """
    frames = mix.shape[-1]
    if frames == 0 or max(mix.max(), -mix.min()) <= ceiling:
        return None
    peak_per_frame = np.maximum(np.abs(mix[0]), np.abs(mix[1]))
    need = np.minimum(1.0, (ceiling * 0.999) / np.maximum(peak_per_frame, 1e-12))
    block = LIMITER_BLOCK_FRAMES
    blocks = -(-frames // block)
    padded = np.ones(blocks * block, np.float32)
    padded[:frames] = need
    block_need = padded.reshape(blocks, block).min(axis=1).astype(np.float64)
    width = LIMITER_HALF_WIDTH_BLOCKS
    held = block_need.copy()
    for shift in range(1, width + 2):
        np.minimum(held, np.roll(block_need, shift), out=held)
        np.minimum(held, np.roll(block_need, -shift), out=held)
    smooth = sum(np.roll(held, shift) for shift in range(-width, width + 1)) / (2 * width + 1)
    return _periodic_interp(smooth, block, frames)
