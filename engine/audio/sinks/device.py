"""The sound card (or JACK), supervised: PortAudio runs in a process of its own.

`DeviceSink` renders into a private shared-memory ring (the `ShmSink` protocol, clocked by
its reader) and starts `engine.audio.sinks.device_host`, which plays that ring from PortAudio's
callback. So:
- **underruns are counted where they happen**: the host's callback found the ring short (the
  ring header's `underruns`), independent of PortAudio's flags;
- **a lost device is noticed**: the ring's read index stands still for `stall_ms`, or the
  host exits. The sink says so in one line (`events`, `state: lost`), keeps the musical clock
  running on the monotonic clock (beats, bars and transitions go on), and starts a new host
  every `reopen_s` until one plays again;
- **no PortAudio call can hang the daemon**: a host stuck in a dead JACK server is killed.
The daemon process never loads PortAudio (for `--buffer-blocks 0`, see
engine/audio/sinks/direct.py).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time

from engine.audio.sinks.base import Pull, SinkError
from engine.audio.sinks.shm import ShmSink

log = logging.getLogger("segue.device")

STALL_MS = 250.0  # the device read nothing for this long: lost
REOPEN_SECONDS = 2.0  # a new host is tried this often while the device is lost
HOST_START_SECONDS = 15.0  # a host that has not said ok or error by then is killed
SUPERVISE_SECONDS = 0.05


def sounddevice():
    try:
        import sounddevice as sd
    except OSError as exc:  # PortAudio library missing
        raise SinkError(f"no audio output: PortAudio is not installed ({exc})") from None
    return sd


def list_devices() -> list[dict]:
    """Output devices with their host API, for `segue devices`."""
    sd = sounddevice()
    apis = sd.query_hostapis()
    return [
        {
            "index": i,
            "name": d["name"],
            "hostapi": apis[d["hostapi"]]["name"],
            "channels": d["max_output_channels"],
            "default_samplerate": d["default_samplerate"],
        }
        for i, d in enumerate(sd.query_devices())
        if d["max_output_channels"] >= 2
    ]


def find_device(spec: str | int | None) -> int | None:
    """A device index from an index, a name fragment, or `jack` (the JACK host API)."""
    sd = sounddevice()
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


class DeviceSink(ShmSink):
    """The sound card through a supervised host process (see the module docstring)."""

    def __init__(
        self,
        device: str | int | None = None,
        block_frames: int = 256,
        sample_rate: int = 48000,
        buffer_blocks: int = 2,
        realtime_priority: int = 10,
        stall_ms: float = STALL_MS,
        reopen_s: float = REOPEN_SECONDS,
    ) -> None:
        if buffer_blocks < 1:
            raise SinkError(
                "the device sink keeps at least one block in its ring "
                "(--buffer-blocks 0 is the direct callback)"
            )
        fill = buffer_blocks * block_frames
        super().__init__(
            f"segue-device-{os.getpid()}",
            target_fill_frames=fill,
            capacity_frames=max(4096, 4 * fill),
            block_frames=block_frames,
            sample_rate=sample_rate,
            reader_timeout_ms=stall_ms,
            unlink_on_stop=True,
            realtime_priority=realtime_priority,
        )
        self.name = "device"
        self.device_spec = None if device is None else str(device)
        self.buffer_blocks = buffer_blocks
        self.stall_ms = stall_ms
        self.reopen_s = reopen_s
        self.device_name = ""
        self.hostapi = ""
        self.device_latency_s = 0.0
        self.losses = 0
        self.reopens = 0
        self.lost_since = 0.0
        self._host: subprocess.Popen | None = None
        self._answer: list[dict] = []
        self._stop = threading.Event()
        self._tried_at = 0.0
        self.prepare()  # the ring exists before the host looks for it
        answer = self._start_host(wait=True)
        if "error" in answer:
            self._end_host()
            self._close_ring()
            raise SinkError(answer["error"])
        self._adopt(answer)

    # -- the host process ----------------------------------------------------------------

    def _start_host(self, wait: bool) -> dict:
        command = [
            sys.executable,
            "-m",
            "engine.audio.sinks.device_host",
            "--ring",
            self.segment,
            "--blocksize",
            str(self.block_frames),
            "--rate",
            str(self.sample_rate),
            "--priority",
            str(self.realtime_priority),
        ]
        if self.device_spec is not None:
            command += ["--device", self.device_spec]
        self._host = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        answer: list[dict] = []
        self._answer = answer
        reader = threading.Thread(
            target=self._read_answer,
            args=(self._host, answer),
            name="segue-device-answer",
            daemon=True,
        )
        reader.start()
        if not wait:
            return {}
        reader.join(HOST_START_SECONDS)
        return (
            answer[0]
            if answer
            else {"error": f"the audio device did not open in {HOST_START_SECONDS:.0f} s"}
        )

    @staticmethod
    def _read_answer(host: subprocess.Popen, answer: list) -> None:
        line = host.stdout.readline()
        try:
            answer.append(json.loads(line))
        except ValueError:
            answer.append({"error": "the audio device host exited before it played"})

    def _adopt(self, answer: dict) -> None:
        self.device_name = answer.get("device", "")
        self.hostapi = answer.get("hostapi", "")
        self.device_latency_s = float(answer.get("latency_s", 0.0))
        # What waits in the ring is latency too, and then the device's own.
        self.output_latency_s = self.target_fill_frames / self.sample_rate + self.device_latency_s

    def _end_host(self) -> None:
        host, self._host = self._host, None
        if host is None:
            return
        host.kill()  # never politely: a host stuck in PortAudio would not answer
        try:
            host.wait(2)
        except subprocess.TimeoutExpired:
            pass
        for pipe in (host.stdin, host.stdout):
            try:
                pipe.close()
            except OSError:
                pass

    def _close_ring(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close(unlink=True)

    # -- streaming and supervision -----------------------------------------------------

    def run(self, pull: Pull, stop: threading.Event) -> None:
        supervisor = threading.Thread(
            target=self._supervise, args=(stop,), name="segue-device-watch", daemon=True
        )
        supervisor.start()
        try:
            super().run(pull, stop)
        finally:
            self._stop.set()
            supervisor.join(1.0)
            self._end_host()

    def _supervise(self, stop: threading.Event) -> None:
        """Watch the host and the ring; on a loss keep time and try again (its own thread)."""
        next_try = 0.0
        while not (stop.wait(SUPERVISE_SECONDS) or self._stop.is_set()):
            now = time.monotonic()
            host = self._host
            if self.state == "playing":
                exited = host is None or host.poll() is not None
                if exited or (self._seen_reader and not self._reader_present):
                    why = (
                        "its host process exited"
                        if exited
                        else (f"it played nothing for {self.stall_ms:.0f} ms")
                    )
                    self._lose(why)
                    next_try = now + self.reopen_s
            elif self.state == "lost" and now >= next_try:
                self._end_host()
                self._start_host(wait=False)
                self.state = "reopening"
                self._tried_at = now
            elif self.state == "reopening":
                if self._answer and "error" in self._answer[0]:
                    self.state, next_try = "lost", now + self.reopen_s
                elif self._answer and self.paced_from is None:  # it plays: the reader moved
                    self._adopt(self._answer[0])
                    self.reopens += 1
                    self.state = "playing"
                    message = (
                        f"audio device back after {now - self.lost_since:.1f} s: "
                        f"{self.device_name} ({self.hostapi})"
                    )
                    log.info("%s", message)
                    self.events.append(("info", message))
                elif now - self._tried_at > HOST_START_SECONDS:
                    self.state, next_try = "lost", now

    def _lose(self, why: str) -> None:
        self.paced_from = (self._counters["frames_written"], time.monotonic_ns())
        self._end_host()
        self.losses += 1
        self.lost_since = time.monotonic()
        self.state = "lost"
        message = (
            f"audio device lost ({why}); the music keeps time and Segue retries "
            f"every {self.reopen_s:g} s"
        )
        log.warning("%s", message)
        self.events.append(("error", message))

    @property
    def _seen_reader(self) -> bool:
        return self._reader_present or self._counters["reader_gone_events"] > 0

    def stats(self) -> dict:
        out = super().stats()
        block_ms = self.block_frames / self.sample_rate * 1000
        out |= {
            "sink": self.name,
            "state": self.state,
            "device": self.device_name,
            "hostapi": self.hostapi,
            "losses": self.losses,
            "reopens": self.reopens,
            "output_latency_ms": round(self.output_latency_s * 1000, 3),
            "device_latency_ms": round(self.device_latency_s * 1000, 3),
            "buffer_ms": round(self.buffer_blocks * block_ms, 3),  # part of output_latency_ms
            "block_ms": round(block_ms, 3),
            "mode": f"ring ({self.buffer_blocks} blocks)",
        }
        return out
