"""The daemon's threads above the machine's ordinary tasks (SCHED_FIFO), its children not.

Why: the audio thread needs the GIL, and any thread of this process may hold it. On a busy
machine (a game beside Segue) an ordinary thread holding the GIL is preempted by the game's
threads for milliseconds, and the audio thread waits behind it: underruns. At SCHED_FIFO,
below the audio thread's own priority, no ordinary task preempts a thread that holds the GIL.
The cost is bounded: the OSC thread parses for at most half of each 20 ms window and reads for
at most a quarter more (engine/control/osc.py), the other threads do little, and the kernel
keeps 5 % of each CPU for ordinary tasks whatever real-time threads do.

Processes the daemon starts (the loop worker, the device host) must run as ordinary tasks, so
the policy carries SCHED_RESET_ON_FORK. Linux applies that flag to every task the thread
creates, threads included: a thread started after the lift runs SCHED_OTHER. So the lift is a
sweep of /proc/self/task, run when threads have started (`Daemon.start`, a new loop worker's
pool and queue threads) and every `SWEEP_SECONDS` from the control thread for any other.
"""

from __future__ import annotations

import os

SWEEP_SECONDS = 0.5  # threads started by libraries are lifted at most this late


def lift(priority: int) -> str:
    """Every thread of this process that runs SCHED_OTHER, now at SCHED_FIFO `priority` (with
    SCHED_RESET_ON_FORK); what this run got, for the log."""
    if priority <= 0:
        return "normal priority"
    try:
        os.sched_setscheduler(0, _policy(), os.sched_param(priority))
    except (OSError, AttributeError):
        return "normal priority (no right to real-time scheduling)"
    sweep(priority)
    return f"SCHED_FIFO {priority}"


def sweep(priority: int) -> None:
    """Lift the threads that still run SCHED_OTHER (threads at their own real-time priority,
    like the sink's writer, keep it)."""
    if priority <= 0:
        return
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return
    for name in tasks:
        tid = int(name)
        try:
            if os.sched_getscheduler(tid) == os.SCHED_OTHER:
                os.sched_setscheduler(tid, _policy(), os.sched_param(priority))
        except OSError:
            pass  # it has ended meanwhile, or we may not


def _policy() -> int:
    return os.SCHED_FIFO | os.SCHED_RESET_ON_FORK
