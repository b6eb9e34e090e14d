"""The loop worker, supervised: a dead or hung worker is replaced, and nothing waits for it.

`WorkerMaker` runs the `Workshop` (model + synth) in one worker process, as
`engine/making/worker.py` describes. Around it:

- **Death** is seen at the next control tick: the process pool marks itself broken when its
  process exits (killed, crashed, out of memory). **A hang**, only while the worker has work:
  stopped (SIGSTOP, a debugger; seen in /proc at once), or its heartbeat (a thread that
  stamps a shared clock every `HEARTBEAT_SECONDS`) older than `HUNG_SECONDS` while the worker
  burned at least `HUNG_CPU_SHARE` of that time on a CPU (spinning in C with the GIL held),
  or no answer to a request for `STUCK_SECONDS` of the worker's own time (a loop takes well
  under one second). A worker at nice 10 on a busy machine (a game on every core) waits for a
  CPU for seconds without being hung: it got no CPU, so neither its stale heartbeat nor the
  time its main thread spent waiting in the run queue (/proc/PID/schedstat) counts against
  it (see `hung`). A hung worker is killed and counts as dead.
- Each death is one log line and a count; a new worker is started at once, then with a
  doubling backoff while new workers die before they have loaded (`RESTART_BACKOFF_SECONDS`).
- Requests made while no worker is ready wait, as futures, for the next one; the control
  thread never waits. Meanwhile transitions take the loops already in the pools, or replay a
  state's last loop (`LoopPool.take(spare=True)`). Nothing is generated in this process: a
  synth or sampler here would take the GIL from the audio thread (loading TinySoundFont's
  sf3 inline stalled playback for 4.6 s).

Control thread only, like `LoopPool`: every method is called from one thread.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.making.workshop import Made

# engine.pool (numpy, the graph) is imported where it is used, not here: `prestart_worker`
# starts the worker before the daemon has imported them, so both processes import at once.

log = logging.getLogger("segue.worker")

HEARTBEAT_SECONDS = 0.1  # the worker stamps its heartbeat this often
HUNG_SECONDS = 2.0  # a worker with work, an older stamp and CPU spent meanwhile is hung
HUNG_CPU_SHARE = 0.5  # ... at least this share of the stamp's age on a CPU
STUCK_SECONDS = 20.0  # a request unanswered this long, not counting waits for a CPU: hung
RESTART_BACKOFF_SECONDS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)  # while new workers die loading
DESCRIBE_TIMEOUT_SECONDS = 120.0


def _heartbeat_init(heartbeat, soundfont: str, model: str | None, use_model: bool,
                    warm_graph: str | None = None) -> None:  # fmt: skip
    """Worker process: start the heartbeat, then load the workshop."""
    from engine.making.worker import _worker_init

    # An ordinary task whoever started it (a daemon run from a real-time shell passes its policy
    # on): loops are written with what the audio leaves, at nice 10 (engine/making/worker.py).
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass

    def beat() -> None:
        while True:
            heartbeat.value = time.monotonic()
            time.sleep(HEARTBEAT_SECONDS)

    threading.Thread(target=beat, name="segue-worker-heartbeat", daemon=True).start()
    _worker_init(soundfont, model, use_model, warm_graph)


def _describe() -> tuple[str, str, int, dict]:
    from engine.making.worker import _worker_describe, _worker_synth

    generator, problem = _worker_describe()
    return generator, problem, os.getpid(), _worker_synth()


def _launch(args: tuple, warm_graph: str | None = None) -> tuple:
    """(heartbeat, executor, the worker's description to come): a worker started now (its
    first request makes the pool spawn it)."""
    context = multiprocessing.get_context("spawn")
    heartbeat = context.Value("d", 0.0, lock=False)
    executor = cf.ProcessPoolExecutor(max_workers=1, mp_context=context,
                                      initializer=_heartbeat_init,
                                      initargs=(heartbeat, *args, warm_graph))  # fmt: skip
    return heartbeat, executor, executor.submit(_describe)


_prestarted: dict[tuple, tuple] = {}


def prestart_worker(soundfont: str | Path, model: str | Path | None, use_model: bool,
                    warm_graph: str | Path | None = None) -> None:  # fmt: skip
    """Start the loop worker before the daemon is built: it loads the model and SoundFont
    (and the samples of `warm_graph`'s initial state) while the daemon imports its modules
    and opens its sink. The WorkerMaker made with the same arguments adopts it as its first
    worker."""
    args = (str(soundfont), str(model) if model else None, use_model)
    if args not in _prestarted:
        _prestarted[args] = _launch(args, str(warm_graph) if warm_graph else None)


@dataclass
class WorkerCounters:
    deaths: int = 0  # workers that exited or were killed while Segue ran
    hangs: int = 0  # of those, killed by Segue for a stale heartbeat
    restarts: int = 0  # workers started after the first
    deferred: int = 0  # requests that waited for a new worker


class WorkerMaker:
    """The pool's maker: one supervised worker process, replaced when it dies or hangs."""

    def __init__(self, soundfont: str | Path, model: str | Path | None, use_model: bool) -> None:
        from engine.making.worker import remove_stale_clips

        remove_stale_clips()
        self._args = (str(soundfont), str(model) if model else None, use_model)
        self.counters = WorkerCounters()
        self.state = "starting"  # starting, ready, restarting
        self.generator = "?"
        self.problem = ""
        self.worker_pid = 0
        self.synth_info: dict = {}  # the synthesizer and SoundFont (for /segue/status)
        self._executor: cf.ProcessPoolExecutor | None = None
        self._heartbeat = None
        self._ready_future: cf.Future | None = None
        self._restart_at: float | None = None
        self._deaths_young = 0
        # worker requests: when they were sent, and the worker's run-queue wait then
        self._inflight: dict[cf.Future, tuple[float, float]] = {}
        self._unreceived: set[str] = set()  # shipped clip files not yet mapped
        self._next_hang_check = 0.0
        self._beat_seen = (0.0, 0.0)  # the last heartbeat stamp seen, the worker's CPU then
        self._deferred: list[tuple[str, tuple, cf.Future]] = []
        self._start()

    # -- the worker's life ------------------------------------------------------------

    def _start(self) -> None:
        launched = _prestarted.pop(self._args, None) or _launch(self._args)
        self._heartbeat, self._executor, self._ready_future = launched
        self._restart_at = None

    def describe(self) -> tuple[str, str]:
        """(generator, problem) of the first worker; waits for it to load (start-up only)."""
        future = self._ready_future
        assert future is not None
        self.generator, self.problem, self.worker_pid, self.synth_info = future.result(
            DESCRIBE_TIMEOUT_SECONDS
        )
        self.state = "ready"
        return self.generator, self.problem

    def supervise(self) -> None:
        """Control tick: notice a dead or hung worker, start a new one when due, adopt it
        once it has loaded. Cheap: a few attribute reads when all is well."""
        now = time.monotonic()
        if self._executor is not None:
            broken = getattr(self._executor, "_broken", False)
            if broken:
                self._died(f"died ({self._exit_code()})", hung=False)
            elif now >= self._next_hang_check and self._hung(now):
                self._kill()
                self._died("hung; killed", hung=True)
        if self._executor is None and self._restart_at is not None and now >= self._restart_at:
            self.counters.restarts += 1
            self._start()
        future = self._ready_future
        if self.state != "ready" and future is not None and future.done():
            try:
                self.generator, self.problem, self.worker_pid, self.synth_info = future.result()
            except Exception:  # noqa: BLE001 - the new worker died while loading: seen above
                return
            self.state = "ready"
            log.info("loop worker %d ready (generator: %s)", self.worker_pid, self.generator)
            deferred, self._deferred = self._deferred, []
            for method, args, waiting in deferred:
                _forward(self.submit(method, *args), waiting)

    def _hung(self, now: float) -> bool:
        self._next_hang_check = now + 0.1
        # Only a worker that has loaded and has work can be hung: loading holds the GIL in C.
        if self.state != "ready" or self._heartbeat is None:
            return False
        beat = self._heartbeat.value
        stopped, cpu = _process_stat(self.worker_pid)
        if beat != self._beat_seen[0]:  # a fresh stamp: the CPU is counted from here
            self._beat_seen = (beat, cpu)
        busy = [sent for f, sent in self._inflight.items() if not f.done()]
        if not busy:
            return False
        sent, waited_then = min(busy)
        waited = run_queue_seconds(self.worker_pid) - waited_then  # starved, not stuck
        return hung(now - beat, cpu - self._beat_seen[1], now - sent - waited, stopped)

    def _exit_code(self) -> str:
        for process in list(getattr(self._executor, "_processes", {}).values()):
            code = process.exitcode
            if code is not None:
                return f"signal {-code}" if code < 0 else f"exit code {code}"
        return "killed or crashed"

    def _kill(self) -> None:
        if self.worker_pid:
            try:
                os.kill(self.worker_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _died(self, how: str, hung: bool) -> None:
        executor, self._executor = self._executor, None
        self._ready_future = None
        # Only workers that die while loading escalate the backoff (a bad model or SoundFont
        # would crash every new one); one killed at work is replaced at once.
        self._deaths_young = self._deaths_young + 1 if self.state != "ready" else 0
        backoff = RESTART_BACKOFF_SECONDS[
            min(max(0, self._deaths_young - 1), len(RESTART_BACKOFF_SECONDS) - 1)
        ]
        self.counters.deaths += 1
        self.counters.hangs += hung
        self.state = "restarting"
        log.warning("loop worker %d %s; the pools play on, a new worker starts in %.1f s",
                    self.worker_pid, how, backoff)  # fmt: skip
        self._restart_at = time.monotonic() + backoff
        # The broken pool has failed its futures already; joining its manager thread is quick.
        executor.shutdown(wait=False, cancel_futures=True)
        self._remove_orphans()

    def _remove_orphans(self) -> None:
        """Clip files the dead worker wrote that nobody will map (results not yet received
        are kept: their futures completed before the death)."""
        from engine.making.worker import _CLIP_PREFIX, _SHM_DIR

        for path in _SHM_DIR.glob(f"{_CLIP_PREFIX}{os.getpid()}-*"):
            if str(path) not in self._unreceived:
                path.unlink(missing_ok=True)

    # -- requests ---------------------------------------------------------------------

    def submit(self, method: str, *args) -> cf.Future:
        """A future for `Workshop.method(*args)`, from the worker, or from the next one if it
        is down or loading. Never blocks, never raises."""
        self._inflight = {f: t for f, t in self._inflight.items() if not f.done()}
        if self._executor is not None and self.state == "ready":
            from engine.making.worker import _worker_call

            try:
                future = self._executor.submit(_worker_call, method, *args)
            except (BrokenProcessPool, RuntimeError):
                self._died(f"died ({self._exit_code()})", hung=False)
            else:
                self._inflight[future] = (time.monotonic(), run_queue_seconds(self.worker_pid))
                future.add_done_callback(self._shipped)
                return future
        self.counters.deferred += 1
        waiting: cf.Future = cf.Future()
        self._deferred.append((method, args, waiting))
        return waiting

    def _shipped(self, future: cf.Future) -> None:
        # Any thread: remember the file of a result until the control thread maps it.
        if not future.cancelled() and future.exception() is None:
            self._unreceived.add(future.result().clip.path)

    def receive(self, made: Made) -> Made:
        """Map a clip the worker shipped (control thread)."""
        from engine.making.worker import _land

        self._unreceived.discard(made.clip.path)
        return replace(made, clip=_land(made.clip))

    def status(self) -> dict:
        return {"state": self.state, "pid": self.worker_pid, "generator": self.generator,
                **vars(self.counters)}  # fmt: skip

    def close(self) -> None:
        """Stop at once: the worker holds nothing worth waiting for (a loop half-written)."""
        if self._executor is not None:
            for process in list(getattr(self._executor, "_processes", {}).values()):
                process.kill()
            self._executor.shutdown(wait=True, cancel_futures=True)
        for _, _, waiting in self._deferred:
            waiting.cancel()
        # Clips the worker shipped that were never collected.
        from engine.making.worker import _CLIP_PREFIX, _SHM_DIR

        for path in _SHM_DIR.glob(f"{_CLIP_PREFIX}{os.getpid()}-*"):
            path.unlink(missing_ok=True)


def _process_stat(pid: int) -> tuple[bool, float]:
    """(stopped: state T or t, CPU seconds: user + system) from /proc/PID/stat; (False, 0.0)
    when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return False, 0.0
    return fields[0] in (b"T", b"t"), (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def run_queue_seconds(pid: int) -> float:
    """How long the main thread of `pid` has waited, runnable, for a CPU (the second field of
    /proc/PID/schedstat); 0.0 where the kernel does not say or the process is gone."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def hung(stale_s: float, cpu_s: float, busy_s: float, stopped: bool) -> bool:
    """Whether a loaded worker with work is hung: its heartbeat `stale_s` old, `cpu_s` of CPU
    spent by it since that stamp, its oldest request `busy_s` old (less the time the worker
    waited for a CPU meanwhile), stopped in /proc."""
    if stopped or busy_s > STUCK_SECONDS:
        return True
    return stale_s > HUNG_SECONDS and cpu_s >= HUNG_CPU_SHARE * stale_s


def _forward(source: cf.Future, target: cf.Future) -> None:
    """Complete `target` with `source`'s outcome (on whichever thread completes `source`)."""

    def copy(done: cf.Future) -> None:
        if not target.set_running_or_notify_cancel():
            return  # closed meanwhile
        if done.cancelled():  # its worker died before it ran
            target.set_exception(BrokenProcessPool("the loop worker went away"))
            return
        exc = done.exception()
        if exc is not None:
            target.set_exception(exc)
        else:
            target.set_result(done.result())

    source.add_done_callback(copy)
