"""What every sink is: a clock that pulls audio from the engine.

A sink owns the clock. It calls `pull(frames)` from exactly one thread (its audio thread)
and receives a float32 (frames, 2) view of the mixer's output buffer, valid until the next
call. `pull` never blocks, never allocates, never raises.

The whole contract, in the order the daemon uses it:
- `prepare()`: attach to outside resources before the music starts (may be a no-op);
- `run(pull, stop)`: stream until `stop` is set (the sink's thread; blocks);
- `started`: set once audio flows (or the sink has failed);
- `output_latency_s`: seconds from a block handed over to it being heard;
- `state`: "starting", "playing", or a fault the sink is riding out ("lost", ...);
- `events`: one-line reports of faults and recoveries, drained by the control thread;
- `stats()`: counters for /segue/status (any thread);
- `underrun_times`: when underruns were seen (CLOCK_MONOTONIC seconds, the last 64), so a
  reader of the status can set them beside other clocks (the benchmarks set them beside the
  host's own stalls).
"""

from __future__ import annotations

import collections
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

Pull = Callable[[int], np.ndarray]


class SinkError(Exception):
    """A sink could not open; the message is one line a user can act on."""


class Sink(ABC):
    name = "sink"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.output_latency_s = 0.0
        self.state = "starting"
        # (kind, message) pairs: "error" for a fault, "info" for a recovery. Appended by the
        # sink's own threads, popped by the control thread (deque ends are thread-safe).
        self.events: collections.deque[tuple[str, str]] = collections.deque(maxlen=64)
        self.underrun_times: collections.deque[float] = collections.deque(maxlen=64)

    def underrun_times_status(self) -> list[float]:
        """`underrun_times` for /segue/status (any thread: a copy, rounded to 0.1 ms)."""
        return [round(t, 4) for t in tuple(self.underrun_times)]

    def prepare(self) -> None:  # noqa: B027 - most sinks need nothing before they run
        """Attach to outside resources while the daemon is still starting."""

    @abstractmethod
    def run(self, pull: Pull, stop: threading.Event) -> None:
        """Stream until `stop` is set. Blocks the calling (the sink's own) thread."""

    @abstractmethod
    def stats(self) -> dict:
        """Counters for /segue/status: underruns, blocks, latency, state ..."""
