"""The sound card with PortAudio's callback in the daemon itself (`--buffer-blocks 0`).

One block less latency than the supervised device sink (engine/audio/sinks/device.py), for
measurements such as the FMOD-like 4 x 1024 reference; but any busy Python thread can make
the callback late, and a lost device is not supervised (PortAudio runs in this process).
"""

from __future__ import annotations

import os
import threading
import time

from engine.audio.sinks.base import Pull, Sink, SinkError
from engine.audio.sinks.device import find_device, sounddevice
from engine.audio.sinks.timing import BlockTimer


class DirectDeviceSink(Sink):
    name = "device"

    def __init__(
        self,
        device: str | int | None = None,
        block_frames: int = 256,
        sample_rate: int = 48000,
        realtime_priority: int = 10,
    ) -> None:
        super().__init__()
        self.device = find_device(device)
        self.realtime_priority = realtime_priority
        self.realtime = "not asked" if realtime_priority <= 0 else "pending"
        self.block_frames = block_frames
        self.sample_rate = sample_rate
        self.underruns = 0
        self.errors = 0
        self.device_name = ""
        self.hostapi = ""
        self.timer = BlockTimer()
        self._pull: Pull | None = None

    def _callback(self, outdata, frames, time_info, status) -> None:
        """Audio thread: pull one block and copy it out. No allocation, locks or I/O."""
        t0 = time.perf_counter_ns()
        if self.realtime == "pending":
            self._become_realtime()
        try:
            if status.output_underflow:
                self.underruns += 1
            outdata[:] = self._pull(frames)
        except Exception:  # noqa: BLE001 - never raise into PortAudio
            outdata.fill(0)
            self.errors += 1
        self.timer.count(time.perf_counter_ns() - t0)

    def _become_realtime(self) -> None:
        """Once, on the first callback: SCHED_FIFO for this (the audio) thread."""
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.realtime_priority))
            self.realtime = f"SCHED_FIFO {self.realtime_priority}"
        except (OSError, AttributeError) as exc:
            self.realtime = f"normal priority ({exc.__class__.__name__})"

    def run(self, pull: Pull, stop: threading.Event) -> None:
        sd = sounddevice()
        self._pull = pull
        try:
            stream = sd.OutputStream(
                samplerate=self.sample_rate,
                blocksize=self.block_frames,
                device=self.device,
                channels=2,
                dtype="float32",
                latency="low",
                callback=self._callback,
            )
        except Exception as exc:  # noqa: BLE001 - PortAudio errors become one line
            raise SinkError(f"cannot open the audio device: {exc}") from None
        # Ask PortAudio everything before the stream runs: queries made while the JACK
        # process thread is live can stall it.
        self.output_latency_s = float(stream.latency)
        info = sd.query_devices(stream.device)
        self.device_name = info["name"]
        self.hostapi = sd.query_hostapis(info["hostapi"])["name"]
        try:
            stream.start()
            self.state = "playing"
            self.started.set()
            stop.wait()
        finally:
            stream.close(ignore_errors=True)

    def stats(self) -> dict:
        return {
            "sink": self.name,
            "state": self.state,
            "device": self.device_name,
            "hostapi": self.hostapi,
            "underruns": self.underruns,
            "callbacks": self.timer.blocks,
            "errors": self.errors,
            "output_latency_ms": round(self.output_latency_s * 1000, 3),
            "block_frames": self.block_frames,
            "block_ms": round(self.block_frames / self.sample_rate * 1000, 3),
            "audio_thread": self.realtime,
            "mode": "callback (in the daemon)",
            **self.timer.stats(),
        }
