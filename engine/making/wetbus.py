"""The synth's one reverb and chorus bus, shared out among the stems by each part's recent energy.

FluidSynth renders every part dry into its own stem and all their reverb and chorus into one
wet pair (four buses would cost four times as much). Each part takes a share of the wet pair
in proportion to its dry energy over the last half second or so, so the stems still sum
exactly to FluidSynth's mix and a part faded out by layering takes most of its reverb with it.
"""

from __future__ import annotations

import math

import numpy as np

from engine.making._sosfilt import sosfilt_2d

ENERGY_BLOCK_FRAMES = 256  # the wet bus is shared out on this grid
WET_MEMORY_SECONDS = 0.5  # how long a part's energy keeps its share of the wet bus


class EnergyShares:
    """Shares the wet bus among the parts by their recent dry energy (a one-pole memory),
    fed a render's segments in order."""

    def __init__(self, parts: int, sample_rate: int, segment_frames: int) -> None:
        a = math.exp(-ENERGY_BLOCK_FRAMES / sample_rate / WET_MEMORY_SECONDS)
        self.one_pole = np.array([[1.0 - a, 0.0, 0.0, 1.0, -a, 0.0]])
        self.state = np.zeros((parts, 1, 2))  # the one-pole memory's filter state
        self.last = np.full((parts, 1), 1.0 / parts, np.float32)
        self.ramp = (np.arange(ENERGY_BLOCK_FRAMES, dtype=np.float32) + 0.5) / ENERGY_BLOCK_FRAMES
        self.segment_blocks = segment_frames // ENERGY_BLOCK_FRAMES
        self.weights = np.empty((parts, segment_frames), np.float32)
        self.share = np.empty((parts, 2, segment_frames), np.float32)

    def add_wet(self, dry: np.ndarray, wet: np.ndarray) -> list[float]:
        """Add each part's share of the wet bus (2, frames) into its dry pair, in place on
        `dry` (parts, 2, frames); returns each segment's loudest energy block (dry and wet).
        `frames` is a whole number of segments, or less at the very end of a render."""
        parts, _, frames = dry.shape
        block = ENERGY_BLOCK_FRAMES
        whole = frames // block
        blocks = -(-frames // block)
        energy = np.empty((parts, blocks))
        wet_energy = np.empty(blocks)
        if whole:
            head = dry[:, :, : whole * block].reshape(parts, 2, whole, block)
            energy[:, :whole] = np.einsum("pcbk,pcbk->pb", head, head)
            head = wet[:, : whole * block].reshape(2, whole, block)
            wet_energy[:whole] = np.einsum("cbk,cbk->b", head, head)
        if blocks > whole:
            rest = dry[:, :, whole * block :]
            energy[:, whole] = np.einsum("pcf,pcf->p", rest, rest)
            rest = wet[:, whole * block :]
            wet_energy[whole] = np.einsum("cf,cf->", rest, rest)
        memory, self.state = sosfilt_2d(self.one_pole, energy, self.state)
        total = memory.sum(axis=0, keepdims=True)
        shares = np.where(total > 1e-20, memory / np.maximum(total, 1e-30),
                          self.last).astype(np.float32)  # fmt: skip
        # Linear from the previous block's share to this one's, across each block.
        previous = np.concatenate((self.last, shares[:, :-1]), axis=1)[:, :, None]
        self.last = shares[:, -1:]
        steps = shares[:, :, None] - previous
        per = self.segment_blocks
        for first in range(0, blocks, per):  # a segment at a time: the buffers stay small
            n = min(per, blocks - first)
            start, stop = first * block, min(frames, (first + n) * block)
            weights = self.weights[:, : n * block].reshape(parts, n, block)
            np.multiply(steps[:, first : first + n], self.ramp, out=weights)
            weights += previous[:, first : first + n]
            share = self.share[:, :, : stop - start]
            np.multiply(self.weights[:, None, : stop - start], wet[:, start:stop], out=share)
            dry[:, :, start:stop] += share
        levels = energy.sum(axis=0) + wet_energy
        return np.maximum.reduceat(levels, np.arange(0, blocks, per)).tolist()
