"""What every sink is: a clock that pulls audio from the engine.

A sink owns the clock. It calls `pull(frames)` from exactly one thread (its audio thread)
and receives a float32 (frames, 2) view of the mixer's output buffer, valid until the next
call. `pull` never blocks, never allocates, never raises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

import numpy as np

Pull = Callable[[int], np.ndarray]


class SinkError(Exception):
    """A sink could not open; the message is one line a user can act on."""


class Sink(Protocol):
    name: str

    def run(self, pull: Pull, stop: threading.Event) -> None:
        """Stream until `stop` is set. Blocks the calling (control-side) thread."""
        ...

    def stats(self) -> dict:
        """Counters for /segue/status: underruns, blocks, latency, ..."""
        ...
