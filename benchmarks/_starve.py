"""`segue run` with its audio writer starved on purpose (for benchmarks/underrun_check.py).

    SEGUE_STARVE_EVERY_S=1.5 SEGUE_STARVE_MS=100 python benchmarks/_starve.py run ...

Every SEGUE_STARVE_EVERY_S seconds the device sink's block producer sleeps SEGUE_STARVE_MS on
the audio thread before it pulls the next block, as a host that takes the CPU away from the
writer would: the device plays on and the stream runs dry. Nothing else of the daemon changes.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.audio.sinks import device  # noqa: E402
from engine.tools import cli  # noqa: E402

EVERY_S = float(os.environ.get("SEGUE_STARVE_EVERY_S", "1.5"))
STALL_S = float(os.environ.get("SEGUE_STARVE_MS", "100")) / 1000
_run = device.DeviceSink.run


def _starved_run(self, pull, stop):
    due = [time.monotonic() + EVERY_S]

    def starved(frames: int):
        now = time.monotonic()
        if now >= due[0]:
            due[0] = now + EVERY_S
            time.sleep(STALL_S)  # the stall this launcher exists for
        return pull(frames)

    return _run(self, starved, stop)


device.DeviceSink.run = _starved_run

if __name__ == "__main__":
    sys.exit(cli.main())
