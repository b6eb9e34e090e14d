"""How late the machine itself runs a real-time thread: one sleeper pinned to each CPU.

    python benchmarks/_stallwatch.py OUT.jsonl    (runs until SIGTERM or SIGINT)

Each sleeper runs at SCHED_FIFO priority 80 - above the JACK server (70), the device host
and every thread of Segue - wakes every 2 ms and writes one JSON line to OUT.jsonl for each
wake-up at least 3 ms late: `{"cpu": 0, "at": <CLOCK_MONOTONIC s>, "late_ms": 12.5}`.
Nothing of Segue can delay a thread at that priority, so such lateness is the host's: a
virtual CPU the hypervisor took away, or kernel work. A dummy JACK server's own clock and
any client on it, even an empty C one, miss their periods in those moments (jackd logs
"JackEngine::XRun: client = ... was not finished"). The benchmarks use these windows to
tell the host's stalls from Segue's (benchmarks/_harness.py: `host_stall_windows`).

Without the right to real-time scheduling the sleepers run at normal priority and the first
line says so (`{"realtime": false}`): their lateness then includes ordinary CPU contention.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

PRIORITY = 80
PERIOD_S = 0.002
LATE_S = 0.003


def _sleeper(cpu: int, out_path: str) -> None:
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return  # a CPU this process may not use
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(PRIORITY))
        realtime = True
    except (OSError, AttributeError):
        realtime = False
    out = open(out_path, "a", buffering=1)  # noqa: SIM115 - one line per stall, flushed
    out.write(json.dumps({"cpu": cpu, "realtime": realtime, "start": time.monotonic()}) + "\n")
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    due = time.monotonic() + PERIOD_S
    while True:
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.monotonic()
        if now - due >= LATE_S:
            out.write(json.dumps({"cpu": cpu, "at": round(due, 4),
                                  "late_ms": round((now - due) * 1000, 2)}) + "\n")  # fmt: skip
        due = max(due + PERIOD_S, now)  # after a stall, no burst of catch-up wake-ups


def main() -> int:
    out_path = sys.argv[1]
    children = []
    for cpu in range(os.cpu_count() or 1):
        pid = os.fork()
        if pid == 0:
            try:
                _sleeper(cpu, out_path)
            finally:
                os._exit(0)
        children.append(pid)

    def stop(*_):
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for pid in children:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
