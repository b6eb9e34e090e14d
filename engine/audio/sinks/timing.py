"""How long the audio thread took to produce each block, as a histogram.

A histogram, not a list: counting is one array increment on the audio thread, and the
percentiles cost O(buckets) on the control side when status asks.
"""

from __future__ import annotations

import collections
import time

import numpy as np

BUCKET_NS = 10_000  # block timings are counted in 10 µs buckets ...
BUCKETS = 2_000  # ... up to 20 ms (the last bucket holds anything longer)


SLOW_KEPT = 128  # the last slow blocks, with their times


class BlockTimer:
    """`slow_ns`: blocks at least this long are also kept with their time (CLOCK_MONOTONIC),
    so a reader can set them beside the host's own stalls."""

    def __init__(self, slow_ns: int | None = None) -> None:
        self.histogram = np.zeros(BUCKETS, np.int64)
        self.max_ns = 0
        self.blocks = 0
        self.slow_ns = slow_ns
        self.slow: collections.deque[tuple[float, float]] = collections.deque(maxlen=SLOW_KEPT)

    def count(self, duration_ns: int) -> None:
        """Audio thread: one block's time. No allocation beyond the int, no locks (a slow
        block costs a clock read and a tuple: it is already late)."""
        self.histogram[min(duration_ns // BUCKET_NS, BUCKETS - 1)] += 1
        if duration_ns > self.max_ns:
            self.max_ns = duration_ns
        self.blocks += 1
        if self.slow_ns is not None and duration_ns >= self.slow_ns:
            self.slow.append((time.monotonic(), duration_ns / 1e6))

    def stats(self) -> dict:
        """{"callback_ms": {p50, p99, p99_9, max}} once a block was timed (any thread)."""
        counts = self.histogram.copy()
        total = int(counts.sum())
        if not total:
            return {}
        cumulative = np.cumsum(counts)

        def percentile(q: float) -> float:  # the bucket's upper edge: never flatters
            bucket = int(np.searchsorted(cumulative, q / 100 * total))
            return round((bucket + 1) * BUCKET_NS / 1e6, 3)

        out = {
            "callback_ms": {
                "p50": percentile(50),
                "p99": percentile(99),
                "p99_9": percentile(99.9),
                "max": round(self.max_ns / 1e6, 3),
            }
        }
        if self.slow_ns is not None:
            out["slow_block_ms"] = round(self.slow_ns / 1e6, 3)
            out["slow_blocks"] = [[round(t, 4), round(ms, 3)] for t, ms in tuple(self.slow)]
        return out
