"""Shared-memory sink: Segue's mix as an external source for a host mixer (FMOD, Wwise, ...).

`segue run --output shm:NAME` streams into the ring /dev/shm/NAME (layout and memory-ordering
rule: engine/audio/ring.py). The host's audio clock drives it: this sink never keeps time itself;
it polls the consumer's read index every millisecond and renders just enough blocks to hold
the ring at `target_fill_frames` ahead of it. So there is no clock drift between Segue and the
host, and latency stays near target_fill_frames (+ one block).

With no reader the ring stays topped up (the mix waits, it never overruns the reader); when a
reader comes back it continues where it left. On stop the producer state becomes `stopped`:
the consumer drains what was published, then reads silence. A restarted daemon re-attaches
to the same segment, so a consumer recovers without reopening.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np

from engine.audio.ring import RingError, RingWriter, check_name
from engine.audio.sinks.base import Pull, Sink, SinkError
from engine.audio.sinks.timing import BlockTimer

CHANNELS = 2

log = logging.getLogger("segue.shm")


class ShmSink(Sink):
    """A sink whose clock is the shared-memory ring's consumer.

    run() is the sink's audio thread: it is the only caller of `pull`. Between polls it
    sleeps (it is not a real-time callback; the host's callback only copies from the ring).
    realtime_priority > 0 asks Linux to run that thread SCHED_FIFO at that priority (needs
    CAP_SYS_NICE or an rtprio limit; without it Segue says so in one line and goes on).
    """

    def __init__(
        self,
        name: str,
        target_fill_frames: int = 1024,
        capacity_frames: int = 8192,
        block_frames: int = 256,
        sample_rate: int = 48000,
        *,
        poll_ms: float = 1.0,
        reader_timeout_ms: float = 250.0,
        unlink_on_stop: bool = False,
        realtime_priority: int = 0,
    ) -> None:
        if block_frames <= 0:
            raise SinkError(f"shm:{name}: block_frames must be positive, not {block_frames}")
        if target_fill_frames < block_frames:
            raise SinkError(
                f"shm:{name}: target_fill_frames ({target_fill_frames}) must be at least "
                f"one block ({block_frames} frames)"
            )
        if target_fill_frames + block_frames > capacity_frames:
            raise SinkError(
                f"shm:{name}: capacity_frames ({capacity_frames}) must hold target_fill_frames "
                f"plus one block ({target_fill_frames + block_frames} frames)"
            )
        try:
            check_name(name)
        except RingError as exc:
            raise SinkError(str(exc)) from None
        super().__init__()
        self.name = f"shm:{name}"
        self.segment = name
        self.target_fill_frames = target_fill_frames
        self.capacity_frames = capacity_frames
        self.block_frames = block_frames
        self.sample_rate = sample_rate
        self.poll_s = poll_ms / 1000.0
        self.reader_timeout_ns = int(reader_timeout_ms * 1e6)
        self.unlink_on_stop = unlink_on_stop
        self.realtime_priority = realtime_priority
        self._writer: RingWriter | None = None
        # How long each block took to produce; a quarter of the block or more is kept as slow.
        self.timer = BlockTimer(slow_ns=block_frames * 1_000_000_000 // sample_rate // 4)
        # Set (by a supervisor) when the reader is lost: the producer then keeps the music's
        # clock on the monotonic clock from (frames_written, ns) until the reader moves again.
        self.paced_from: tuple[int, int] | None = None
        self._counters = {
            "frames_written": 0,
            "blocks_written": 0,
            "pull_errors": 0,
            "reader_gone_events": 0,
            "reader_returns": 0,
            "ring_empty_seen": 0,
            "min_fill_frames": None,
            "max_fill_frames": 0,
            "paced_frames_dropped": 0,
        }
        self._reader_present = False
        self._final: dict = {
            "write_index": 0,
            "read_index": 0,
            "fill_frames": 0,
            "consumer_underruns": 0,
            "consumer_stopped_reads": 0,
            "consumer_silence_frames": 0,
            "restarts": 0,
        }
        self._baseline = {"underruns": 0, "stopped_reads": 0, "silence_frames": 0}

    def prepare(self) -> None:
        """Attach to the ring now, marked stopped, while the daemon is still starting: a host
        then reads silence as "stopped", not as underruns, until the music flows."""
        if self._writer is None:
            try:
                self._writer = RingWriter(
                    self.segment, self.sample_rate, CHANNELS, self.capacity_frames
                )
            except RingError as exc:
                raise SinkError(str(exc)) from None

    def run(self, pull: Pull, stop: threading.Event) -> None:
        """Stream until `stop` is set, then mark the ring stopped. Blocks the calling thread."""
        self.prepare()
        writer = self._writer
        if self.realtime_priority > 0:
            self._raise_priority()
        # The header's consumer counters cover the segment's life; report this run's share.
        self._baseline = {
            f: writer.counter(f) for f in ("underruns", "stopped_reads", "silence_frames")
        }
        self._silence = np.zeros((self.block_frames, CHANNELS), dtype=np.float32)
        counters = self._counters
        last_read_index = writer.read_index()
        last_move_ns = time.monotonic_ns()
        started = False
        underruns_seen = writer.counter("underruns")
        try:
            while not stop.is_set():
                read_index = writer.read_index()
                now_ns = time.monotonic_ns()
                underruns = writer.counter("underruns")
                if underruns != underruns_seen:  # the reader came up short since the last poll
                    underruns_seen = underruns
                    self.underrun_times.append(now_ns / 1e9)
                fill = max(0, writer.write_index - read_index)
                if fill == 0:
                    last_move_ns = now_ns  # an empty ring stalls the reader: our lateness
                self._track_reader(read_index, last_read_index, now_ns, last_move_ns)
                if read_index != last_read_index:
                    last_read_index, last_move_ns = read_index, now_ns
                    self.paced_from = None  # a reader again: its clock leads
                if self._reader_present:
                    if fill == 0:
                        counters["ring_empty_seen"] += 1
                    low = counters["min_fill_frames"]
                    counters["min_fill_frames"] = fill if low is None else min(low, fill)
                if self.paced_from is not None:
                    self._keep_time(pull, writer, fill, now_ns)
                else:  # top up to the target, never past read_index + capacity
                    while (
                        fill < self.target_fill_frames
                        and fill + self.block_frames <= self.capacity_frames
                    ):
                        writer.write(self._produce(pull))
                        fill += self.block_frames
                counters["max_fill_frames"] = max(counters["max_fill_frames"], fill)
                if not started:
                    writer.start()  # the ring is primed: from now on a short read is an underrun
                    started = True
                    self.state = "playing"
                    self.started.set()
                writer.beat()
                time.sleep(self.poll_s)
        finally:
            writer.stop()
            self._final = self._ring_counters(writer)
            self._writer = None
            writer.close(unlink=self.unlink_on_stop)

    def _produce(self, pull: Pull):
        """Sink thread: one block from the mixer, timed; silence if the mixer failed."""
        t0 = time.perf_counter_ns()
        try:
            block = pull(self.block_frames)
        except Exception:  # the mixer promised not to raise; keep the host fed
            self._counters["pull_errors"] += 1
            block = self._silence
        self.timer.count(time.perf_counter_ns() - t0)
        self._counters["frames_written"] += self.block_frames
        self._counters["blocks_written"] += 1
        return block

    def _keep_time(self, pull: Pull, writer: RingWriter, fill: int, now_ns: int) -> None:
        """No reader: pull the mix at the real-time rate (beats and bars go on) and keep the
        ring primed for when one comes back; what does not fit is dropped."""
        frames_at, since_ns = self.paced_from
        due = frames_at + (now_ns - since_ns) * self.sample_rate // 1_000_000_000
        behind = due - self._counters["frames_written"]
        if behind > self.sample_rate:  # never burst more than a second to catch up
            self.paced_from = (self._counters["frames_written"], now_ns)
            behind = 0
        while behind >= self.block_frames:
            block = self._produce(pull)
            behind -= self.block_frames
            if fill + self.block_frames <= self.target_fill_frames:
                writer.write(block)
                fill += self.block_frames
            else:
                self._counters["paced_frames_dropped"] += self.block_frames

    def _raise_priority(self) -> None:
        # SCHED_FIFO wakes this thread on time and makes a busy thread hand over the GIL
        # sooner; the loop sleeps every poll, so it cannot starve the machine.
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.realtime_priority))
        except (AttributeError, OSError) as exc:
            log.warning(
                "shm: no real-time priority for the producer (%s); continuing without",
                getattr(exc, "strerror", None) or exc,
            )

    def _track_reader(
        self, read_index: int, last_read_index: int, now_ns: int, last_move_ns: int
    ) -> None:
        # A reader is present while its read index moves; gone after reader_timeout of stillness.
        if read_index != last_read_index:
            if not self._reader_present:
                self._reader_present = True
                if self._counters["reader_gone_events"]:
                    self._counters["reader_returns"] += 1
        elif self._reader_present and now_ns - last_move_ns > self.reader_timeout_ns:
            self._reader_present = False
            self._counters["reader_gone_events"] += 1

    def _ring_counters(self, writer: RingWriter) -> dict:
        read_index = writer.read_index()
        base = self._baseline
        return {
            "write_index": writer.write_index,
            "read_index": read_index,
            "fill_frames": max(0, writer.write_index - read_index),
            "consumer_underruns": writer.counter("underruns") - base["underruns"],
            "consumer_stopped_reads": writer.counter("stopped_reads") - base["stopped_reads"],
            "consumer_silence_frames": writer.counter("silence_frames") - base["silence_frames"],
            "restarts": writer.generation - 1,
        }

    def stats(self) -> dict:
        """Counters for /segue/status. Safe to call from any thread.

        frames_written / blocks_written: what this run rendered into the ring.
        underruns (= consumer_underruns): short reads the host counted in the header during
        this run; consumer_stopped_reads / consumer_silence_frames likewise.
        reader_present, reader_gone_events, reader_returns: the host's read index stopped
        moving for reader_timeout_ms / started again. ring_empty_seen: polls that found the
        ring empty while a reader was present (this producer was too late).
        min_fill_frames / max_fill_frames: the ring's fill at the producer's polls.
        restarts: producers that attached to this segment before this one.
        latency_ms (= output_latency_ms): frames rendered but not yet read, now.
        """
        writer = self._writer
        try:
            ring = self._ring_counters(writer) if writer is not None else self._final
        except (AttributeError, ValueError):  # the run thread closed the ring meanwhile
            ring = self._final
        latency_ms = 1000.0 * ring["fill_frames"] / self.sample_rate
        return {
            "sink": self.name,
            "state": self.state,
            "running": writer is not None,
            "reader_present": self._reader_present,
            "block_frames": self.block_frames,
            "target_fill_frames": self.target_fill_frames,
            "capacity_frames": self.capacity_frames,
            # Frames rendered but not yet read: Segue's share of the audible latency (the
            # host adds its own mixer and device latency on top).
            "latency_ms": latency_ms,
            "output_latency_ms": latency_ms,
            "underruns": ring["consumer_underruns"],
            "underrun_times": self.underrun_times_status(),
            **self._counters,
            **ring,
            **self.timer.stats(),
        }
