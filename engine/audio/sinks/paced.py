"""Sinks paced by the system clock: a WAV file written in real time, or nothing."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from engine.audio.sinks.base import Pull, Sink, SinkError
from engine.audio.sinks.timing import BlockTimer

REALTIME_PRIORITY = 10


class PacedSink(Sink):
    """A device made of the system clock: it reads one block every block-duration from a
    buffer that this sink's thread keeps `buffer_blocks` ahead, like the ring of the default
    device path (`--buffer-blocks`, 2 by default).

    An underrun is a block a card would play as silence: the clock wanted it before it was
    written. Like a card, it then reads on from where the music is, one underrun per block
    of the gap (as the device host counts its short reads).
    """

    name = "null"

    def __init__(
        self, block_frames: int = 256, sample_rate: int = 48000, buffer_blocks: int = 2
    ) -> None:
        super().__init__()
        if buffer_blocks < 1:
            raise SinkError(f"{self.name}: buffer_blocks must be at least 1, not {buffer_blocks}")
        self.block_frames = block_frames
        self.sample_rate = sample_rate
        self.buffer_blocks = buffer_blocks
        self.blocks = 0
        self.late_blocks = 0  # blocks the clock wanted before they were written: underruns
        # How long each pull took; a quarter of a block or more is kept with its time.
        self.timer = BlockTimer(slow_ns=block_frames * 1_000_000_000 // sample_rate // 4)

    def consume(self, block: np.ndarray) -> None:
        pass

    def close(self) -> None:
        pass

    def run(self, pull: Pull, stop: threading.Event) -> None:
        # SCHED_FIFO where allowed: wakes on time, and takes the GIL back from a busy
        # thread (a flood of OSC) sooner. Without the right, normal priority.
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
        except (OSError, AttributeError):
            pass
        period_ns = self.block_frames * 1_000_000_000 // self.sample_rate
        lead = self.buffer_blocks
        try:
            while self.blocks < lead:  # primed, as a card starts on a full buffer
                self._pull(pull)
            origin = time.monotonic_ns()  # when the clock reads block 0; moved on by each gap
            self.state = "playing"
            self.started.set()
            while not stop.is_set():
                index = self.blocks
                self._pull(pull)
                # Block `index` is read at origin + index·period: written later, it came
                # too late, and the clock played silence for as many blocks as it waited.
                late = time.monotonic_ns() - (origin + index * period_ns)
                if late > 0:
                    gap = -(-late // period_ns)
                    self.late_blocks += gap
                    self.underrun_times.append(time.monotonic())
                    origin += gap * period_ns
                # Wake when the clock starts on the next block, and top the buffer up again.
                delay = origin + (self.blocks - lead) * period_ns - time.monotonic_ns()
                if delay > 0:
                    time.sleep(delay / 1e9)
        finally:
            self.close()

    def _pull(self, pull: Pull) -> None:
        t0 = time.perf_counter_ns()
        block = pull(self.block_frames)
        self.timer.count(time.perf_counter_ns() - t0)
        self.consume(block)
        self.blocks += 1

    def stats(self) -> dict:
        block_ms = self.block_frames * 1000 / self.sample_rate
        return {
            "sink": self.name,
            "state": self.state,
            "blocks": self.blocks,
            "late_blocks": self.late_blocks,
            "underruns": self.late_blocks,
            "buffer_blocks": self.buffer_blocks,
            "buffer_ms": round(self.buffer_blocks * block_ms, 3),
            "output_latency_ms": round(self.buffer_blocks * block_ms, 3),
            "underrun_times": self.underrun_times_status(),
            "block_frames": self.block_frames,
            **self.timer.stats(),
        }


class NullSink(PacedSink):
    name = "null"


class WavSink(PacedSink):
    name = "wav"

    def __init__(
        self,
        path: str | Path,
        block_frames: int = 256,
        sample_rate: int = 48000,
        buffer_blocks: int = 2,
    ) -> None:
        super().__init__(block_frames, sample_rate, buffer_blocks)
        import soundfile

        self.path = Path(path)
        try:
            self._file = soundfile.SoundFile(
                str(self.path), "w", samplerate=sample_rate, channels=2, subtype="FLOAT"
            )
        except (OSError, RuntimeError) as exc:
            raise SinkError(f"cannot write {self.path}: {exc}") from None

    def consume(self, block: np.ndarray) -> None:
        self._file.write(block)

    def close(self) -> None:
        self._file.close()

    def stats(self) -> dict:
        return super().stats() | {"path": str(self.path)}
