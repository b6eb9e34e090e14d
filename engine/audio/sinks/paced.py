"""Sinks paced by the system clock: a WAV file written in real time, or nothing."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from engine.audio.sinks.base import Pull, Sink, SinkError

REALTIME_PRIORITY = 10


class PacedSink(Sink):
    """Pulls one block per block-duration, on absolute deadlines (no drift)."""

    name = "null"

    def __init__(self, block_frames: int = 256, sample_rate: int = 48000) -> None:
        super().__init__()
        self.block_frames = block_frames
        self.sample_rate = sample_rate
        self.blocks = 0
        self.late_blocks = 0  # deadlines missed by more than one block

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
        deadline = time.monotonic_ns()
        self.state = "playing"
        self.started.set()
        try:
            while not stop.is_set():
                self.consume(pull(self.block_frames))
                self.blocks += 1
                deadline += period_ns
                delay = deadline - time.monotonic_ns()
                if delay > 0:
                    time.sleep(delay / 1e9)
                elif -delay > period_ns:
                    self.late_blocks += 1
                    self.underrun_times.append(time.monotonic())
        finally:
            self.close()

    def stats(self) -> dict:
        return {
            "sink": self.name,
            "state": self.state,
            "blocks": self.blocks,
            "late_blocks": self.late_blocks,
            "underruns": self.late_blocks,
            "output_latency_ms": 0.0,
            "underrun_times": self.underrun_times_status(),
            "block_frames": self.block_frames,
        }


class NullSink(PacedSink):
    name = "null"


class WavSink(PacedSink):
    name = "wav"

    def __init__(self, path: str | Path, block_frames: int = 256, sample_rate: int = 48000) -> None:
        super().__init__(block_frames, sample_rate)
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
