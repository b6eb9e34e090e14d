"""The sound card (or JACK) through sounddevice / PortAudio."""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from engine.sinks.base import Pull, SinkError

BUCKET_NS = 10_000  # block timings are counted in 10 µs buckets ...
BUCKETS = 2_000  # ... up to 20 ms (the last bucket holds anything longer)


def _sounddevice():
    try:
        import sounddevice as sd
    except OSError as exc:  # PortAudio library missing
        raise SinkError(f"no audio output: PortAudio is not installed ({exc})") from None
    return sd


def list_devices() -> list[dict]:
    """Output devices with their host API, for `segue devices`."""
    sd = _sounddevice()
    apis = sd.query_hostapis()
    return [
        {"index": i, "name": d["name"], "hostapi": apis[d["hostapi"]]["name"],
         "channels": d["max_output_channels"],
         "default_samplerate": d["default_samplerate"]}
        for i, d in enumerate(sd.query_devices()) if d["max_output_channels"] >= 2
    ]  # fmt: skip


def find_device(spec: str | int | None) -> int | None:
    """A device index from an index, a name fragment, or `jack` (the JACK host API)."""
    sd = _sounddevice()
    devices = list_devices()
    if not devices:
        raise SinkError("no audio output device found")
    if spec is None or spec == "":
        try:
            default = sd.default.device[1]
        except Exception:  # noqa: BLE001
            default = -1
        if default is None or default < 0:
            raise SinkError("no default audio output device")
        return None
    if isinstance(spec, int) or str(spec).isdigit():
        index = int(spec)
        if not any(d["index"] == index for d in devices):
            raise SinkError(f"no output device with index {index} (see `segue devices`)")
        return index
    text = str(spec).lower()
    if text == "jack":
        for d in devices:
            if d["hostapi"].lower().startswith("jack"):
                return d["index"]
        raise SinkError("no JACK output device: is a JACK server running? (see README)")
    for d in devices:
        if text in d["name"].lower():
            return d["index"]
    raise SinkError(f"no output device matching {spec!r} (see `segue devices`)")


class DeviceSink:
    name = "device"

    def __init__(self, device: str | int | None = None, block_frames: int = 256,
                 sample_rate: int = 48000, latency: str | float = "low",
                 realtime_priority: int = 10, buffer_blocks: int = 2) -> None:  # fmt: skip
        self.device = find_device(device)
        # buffer_blocks > 0: PortAudio's own (C) callback plays from its ring buffer and our
        # audio thread keeps `buffer_blocks` blocks in it, so a Python thread holding the GIL
        # for a few ms costs nothing audible; the ring adds its fill to the output latency.
        # 0: our Python callback feeds PortAudio directly (one block less latency, but any
        # busy Python thread in the process can make it late).
        self.buffer_blocks = buffer_blocks
        # PortAudio makes its callback thread real-time when the audio server is; a JACK
        # server started without -R (or a plain ALSA device) leaves it at normal priority,
        # where any busy process can take the CPU from it. 0 leaves it alone.
        self.realtime_priority = realtime_priority
        self.realtime = "not asked" if realtime_priority <= 0 else "pending"
        self.block_frames = block_frames
        self.sample_rate = sample_rate
        self.latency = latency
        self.underruns = 0
        self.callbacks = 0
        self.errors = 0
        self.output_latency_s = 0.0
        self.device_name = ""
        self.hostapi = ""
        self.started_ns = 0
        # A histogram, not a list: percentiles then cost O(buckets) on the control side.
        self.timing_histogram = np.zeros(BUCKETS, np.int64)
        self.timing_max_ns = 0
        self._pull: Pull | None = None
        self.started = threading.Event()

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
        self._count(time.perf_counter_ns() - t0)

    def _count(self, duration_ns: int) -> None:
        """Audio thread: one block's timing into the histogram."""
        self.timing_histogram[min(duration_ns // BUCKET_NS, BUCKETS - 1)] += 1
        if duration_ns > self.timing_max_ns:
            self.timing_max_ns = duration_ns
        self.callbacks += 1

    def _become_realtime(self) -> None:
        """Once, on the first callback: SCHED_FIFO for this (the audio) thread."""
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.realtime_priority))
            self.realtime = f"SCHED_FIFO {self.realtime_priority}"
        except (OSError, AttributeError) as exc:
            self.realtime = f"normal priority ({exc.__class__.__name__})"

    def _write_loop(self, stream, stop: threading.Event) -> None:
        """Audio thread (buffered mode): keep `buffer_blocks` blocks in PortAudio's ring.
        Sleeps while the ring is full enough; never blocks in write (space is checked)."""
        self._become_realtime()
        capacity = stream.write_available
        target = self.buffer_blocks * self.block_frames
        frames = self.block_frames
        nap = frames / self.sample_rate / 8
        while not stop.is_set():
            available = stream.write_available
            capacity = max(capacity, available)  # the ring's size: the most ever free
            if capacity - available > target - frames:
                time.sleep(nap)
                continue
            t0 = time.perf_counter_ns()
            try:
                block = self._pull(frames)
                t1 = time.perf_counter_ns()
                if stream.write(block):
                    self.underruns += 1
            except Exception:  # noqa: BLE001 - counted; the stream goes on
                self.errors += 1
                t1 = time.perf_counter_ns()
            self._count(t1 - t0)  # producing the block

    def run(self, pull: Pull, stop: threading.Event) -> None:
        sd = _sounddevice()
        self._pull = pull
        buffered = self.buffer_blocks > 0
        try:
            stream = sd.OutputStream(
                samplerate=self.sample_rate, blocksize=self.block_frames, device=self.device,
                channels=2, dtype="float32", latency=self.latency,
                callback=None if buffered else self._callback,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - PortAudio errors become one line
            raise SinkError(f"cannot open the audio device: {exc}") from None
        # Ask PortAudio everything before the stream runs: queries made while the JACK
        # process thread is live can stall it.
        self.output_latency_s = float(stream.latency)
        if buffered:  # what waits in PortAudio's ring is latency too
            self.output_latency_s += self.buffer_blocks * self.block_frames / self.sample_rate
        info = sd.query_devices(stream.device)
        self.device_name = info["name"]
        self.hostapi = sd.query_hostapis(info["hostapi"])["name"]
        try:
            stream.start()
            self.started_ns = time.monotonic_ns()
            self.started.set()
            if buffered:
                self._write_loop(stream, stop)
            else:
                stop.wait()
        finally:
            stream.close(ignore_errors=True)

    def stats(self) -> dict:
        """Counters, and how the audio thread kept time (computed here, off that thread)."""
        callbacks = self.callbacks
        block_ms = self.block_frames / self.sample_rate * 1000
        elapsed_s = (time.monotonic_ns() - self.started_ns) / 1e9 if self.started_ns else 0.0
        expected = elapsed_s * self.sample_rate / self.block_frames
        out = {
            "sink": self.name, "device": self.device_name, "hostapi": self.hostapi,
            "underruns": self.underruns, "callbacks": callbacks, "errors": self.errors,
            "output_latency_ms": round(self.output_latency_s * 1000, 3),
            "buffer_ms": round(self.buffer_blocks * block_ms, 3),  # part of output_latency_ms
            "block_frames": self.block_frames, "block_ms": round(block_ms, 3),
            "audio_thread": self.realtime,
            "mode": f"buffered ({self.buffer_blocks} blocks)" if self.buffer_blocks
            else "callback",
            # Blocks the clock asked for that never came: a stalled stream shows here even
            # when PortAudio reports no underflow.
            "missed_blocks": max(0, round(expected) - callbacks - 2),
        }  # fmt: skip
        counts = self.timing_histogram.copy()
        total = int(counts.sum())
        if total:
            cumulative = np.cumsum(counts)

            def percentile(q: float) -> float:  # the bucket's upper edge: never flatters
                bucket = int(np.searchsorted(cumulative, q / 100 * total))
                return round((bucket + 1) * BUCKET_NS / 1e6, 3)

            out["callback_ms"] = {
                "p50": percentile(50), "p99": percentile(99), "p99_9": percentile(99.9),
                "max": round(self.timing_max_ns / 1e6, 3),
            }  # fmt: skip
        return out
