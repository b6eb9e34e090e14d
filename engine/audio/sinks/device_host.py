"""The sound card's side of the device sink: a small process that plays Segue's ring.

`python -m engine.audio.sinks.device_host --ring NAME [--device SPEC] --blocksize N --rate R`

PortAudio lives here, not in the daemon: its callback copies one block from the shared-memory
ring (engine/audio/ring.py) and nothing else, in a process with no other Python thread to take its
GIL. A read that finds the ring short plays silence and is counted in the ring's header as an
underrun: the device's own clock asked and the music was not there, whatever PortAudio's
flags say (its JACK blocking layer never raises them).

Protocol with the daemon: one JSON line on stdout once the stream runs,
`{"ok": true, "device": ..., "hostapi": ..., "latency_s": ...}`, or `{"error": "..."}` and
exit code 2. Then it plays until its stdin closes (the daemon went away) or it is killed.
It never calls PortAudio's terminate: with a dead JACK server that call never returns, and
the daemon would have to wait for it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys


def _say(**fields) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _become_realtime(priority: int) -> None:
    """The callback thread: SCHED_FIFO unless the audio server already made it real-time."""
    try:
        if os.sched_getscheduler(0) == os.SCHED_OTHER and priority > 0:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError):
        pass  # normal priority: the ring's fill is the margin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="segue-device-host")
    parser.add_argument("--ring", required=True)
    parser.add_argument("--device", default=None)
    parser.add_argument("--blocksize", type=int, default=256)
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--priority", type=int, default=10)
    args = parser.parse_args(argv)

    from engine.audio.ring import RingError
    from engine.audio.ring_reader import RingReader
    from engine.audio.sinks.base import SinkError
    from engine.audio.sinks.device import find_device, sounddevice

    try:
        sd = sounddevice()
        device = find_device(args.device)
        reader = RingReader(args.ring)
    except (SinkError, RingError) as exc:
        _say(error=str(exc))
        return 2
    realtime = [False]

    def callback(outdata, frames, time_info, status) -> None:
        """Audio thread: copy one block from the ring (silence where it is short)."""
        if not realtime[0]:
            realtime[0] = True
            _become_realtime(args.priority)
        reader.read_into(outdata)

    try:
        stream = sd.OutputStream(
            samplerate=args.rate,
            blocksize=args.blocksize,
            device=device,
            channels=2,
            dtype="float32",
            latency="low",
            callback=callback,
        )
        latency_s = float(stream.latency)  # asked before the stream runs: JACK may stall
        info = sd.query_devices(stream.device)
        hostapi = sd.query_hostapis(info["hostapi"])["name"]
        stream.start()
    except Exception as exc:  # noqa: BLE001 - PortAudio's errors become one line
        _say(error=f"cannot open the audio device: {exc}")
        return 2
    # No cyclic garbage collection from here on: the callback makes a few small objects a
    # block, which pass a full collection every ~20 s, and a full collection of this process
    # (numpy, sounddevice) held the GIL past a JACK period (JACK logged an xrun: "client =
    # PortAudio was not finished"). What the callback makes is freed by reference counts.
    gc.collect()
    gc.freeze()
    gc.disable()
    _say(ok=True, device=info["name"], hostapi=hostapi, latency_s=latency_s)
    sys.stdin.buffer.read()  # until the daemon closes our stdin or goes away
    os._exit(0)  # no PortAudio terminate (see the module docstring)


if __name__ == "__main__":
    sys.exit(main())
