"""The daemon outlives its loop worker: killed or hung, it is replaced, and the game's
commands are honoured meanwhile (real daemon, real UDP, real worker process)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.test_daemon import start_daemon, stop


@pytest.fixture()
def daemon(tmp_path):
    env = dict(os.environ)
    proc, client, graph, log = start_daemon(tmp_path, env, "--no-model", "--output", "null")
    client.send("/segue/subscribe", client.port)
    yield proc, client, log
    stop(proc)


_ids = itertools.count(1)


def status(client, timeout: float = 5.0) -> dict | None:
    """The reply to this request (its id), never a late reply to an earlier one."""
    request = next(_ids)
    client.send("/segue/status", request)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        params = client.receive("/segue/status", left)
        if params is None:
            return None
        reply = json.loads(params[0])
        if reply.get("id") == request:
            return reply
    return None


def _nice(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[16])


def _ordinary_threads(pid: int) -> list[str]:
    """Names of the threads of `pid` that run SCHED_OTHER."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if os.sched_getscheduler(int(tid)) == os.SCHED_OTHER:
                out.append(Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip())
        except (OSError, ValueError):
            pass  # ended meanwhile
    return out


def _all_lifted(pid: int, timeout: float = 10.0) -> list[str]:
    """The daemon's ordinary threads once its sweep has had time to lift them (none, if it
    works)."""
    deadline = time.monotonic() + timeout
    while (left := _ordinary_threads(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def wait_for(client, predicate, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status_now = status(client, timeout=0.5)
        if status_now is not None and predicate(status_now):
            return status_now
        time.sleep(0.05)
    pytest.fail(f"condition not met; last status: {status_now}")


@pytest.mark.parametrize("how", ["killed", "hung"])
def test_a_dead_or_hung_worker_is_replaced_and_commands_go_on(daemon, how):
    proc, client, log = daemon
    first = status(client)["worker"]
    assert first["state"] == "ready" and first["deaths"] == 0
    # The first worker took its share of the CPU for the first loop (nothing played before
    # it), then stepped back behind the audio.
    assert _nice(first["pid"]) == 10
    # Every thread of the daemon runs above ordinary tasks (a preempted ordinary thread holding
    # the GIL would stall the audio thread); the worker process does not.
    lifted = "SCHED_FIFO" in log.read_text()
    if lifted:
        assert _all_lifted(proc.pid) == []
        assert os.sched_getscheduler(first["pid"]) == os.SCHED_OTHER
    os.kill(first["pid"], signal.SIGKILL if how == "killed" else signal.SIGSTOP)
    if how == "hung":
        # A hung worker is only noticed while it has work: a reload asks every state anew.
        graph = log.parent / "graph" / "game.yaml"
        graph.write_text(graph.read_text().replace("tempo: 144", "tempo: 146"))
        client.send("/segue/reload")
    # The game goes on at once: the control thread applies commands in order, so a status
    # asked right after an event shows it applied, whatever the worker is doing.
    client.send("/segue/event", "enemy_spotted")
    assert status(client)["state"] == "combat"
    client.send("/segue/state", "idle")
    assert status(client)["state"] == "idle"
    after = wait_for(client, lambda s: s["worker"]["state"] == "ready"
                     and s["worker"]["pid"] != first["pid"])  # fmt: skip
    worker = after["worker"]
    assert worker["deaths"] == 1 and worker["restarts"] == 1
    assert _nice(worker["pid"]) == 10  # a worker started while the music plays steps back
    assert worker["hangs"] == (1 if how == "hung" else 0)
    if lifted:  # the new worker's pool threads too, and the new worker runs ordinary
        assert _all_lifted(proc.pid) == []
        assert os.sched_getscheduler(worker["pid"]) == os.SCHED_OTHER
    # Loops come from the new worker again: a transition takes a fresh one.
    made = after["counters"]["pool_made"]
    client.send("/segue/state", "explore")
    wait_for(client, lambda s: s["counters"]["pool_made"] > made and s["state"] == "explore")
    text = log.read_text()
    assert "Traceback" not in text and "error (recovered)" not in text, text
    died = [line for line in text.splitlines() if "loop worker" in line and "new worker" in line]
    assert len(died) == 1, text
    assert proc.poll() is None


@pytest.mark.parametrize(
    ("stale_s", "cpu_s", "busy_s", "stopped", "expected"),
    [
        (0.1, 0.05, 0.3, False, False),  # at work, beating
        (3.0, 2.8, 3.0, False, True),  # spinning in C with the GIL held: no beat, full CPU
        (3.0, 1.5, 3.0, False, True),  # ... on half a core
        (3.0, 0.2, 3.0, False, False),  # starved by a busy machine: no beat, no CPU either
        (30.0, 0.2, 9.0, False, False),  # long starved, its request still young
        (1.0, 1.0, 21.0, False, True),  # a request unanswered past STUCK_SECONDS
        (0.0, 0.0, 0.1, True, True),  # stopped (SIGSTOP, a debugger)
        (2.0, 2.0, 2.0, False, False),  # the stamp no older than HUNG_SECONDS
    ],
)
def test_a_worker_is_hung_only_when_it_runs_without_beating(stale_s, cpu_s, busy_s, stopped,
                                                              expected):  # fmt: skip
    from engine.making.supervisor import hung

    assert hung(stale_s, cpu_s, busy_s, stopped) is expected


def test_a_request_cancelled_with_its_worker_fails_its_waiting_future():
    """A request forwarded to a worker that dies before running it completes the game's
    future with an error (the pool takes another loop), and raises nowhere."""
    import concurrent.futures as cf
    from concurrent.futures.process import BrokenProcessPool

    from engine.making.supervisor import _forward

    source, target = cf.Future(), cf.Future()
    _forward(source, target)
    assert source.cancel()
    with pytest.raises(BrokenProcessPool):
        target.result(0)


def test_the_time_a_worker_waits_for_a_cpu_is_read_from_the_kernel():
    """A starved worker is not a stuck one: the supervisor subtracts the time its main thread
    waited, runnable, for a CPU. Three busy processes pinned to one CPU each run a third of the
    time and wait two thirds; a sleeping one waits for nothing."""
    import subprocess
    import sys

    from engine.making.supervisor import _process_stat, run_queue_seconds

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; print(flush=True); "
                                "time.sleep(30)"], stdout=subprocess.PIPE)  # fmt: skip
    sleeper.stdout.readline()  # started, and going to sleep
    stat = Path(f"/proc/{sleeper.pid}/stat")
    deadline = time.monotonic() + 5.0
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "S" and time.monotonic() < deadline:
        time.sleep(0.001)  # asleep before its waiting is read
    slept_from = run_queue_seconds(sleeper.pid)
    cpu = min(os.sched_getaffinity(0))
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3)]
    try:
        for p in busy:  # pinned from here (a preexec_fn could deadlock a threaded parent)
            os.sched_setaffinity(p.pid, {cpu})
        time.sleep(1.5)
        for p in busy:
            waited, ran = run_queue_seconds(p.pid), _process_stat(p.pid)[1]
            assert waited > 0.3 and waited > 1.3 * ran, (waited, ran)
        assert run_queue_seconds(sleeper.pid) - slept_from < 0.01
    finally:
        for p in (*busy, sleeper):
            p.kill()
            p.wait()
        sleeper.stdout.close()
    assert run_queue_seconds(busy[0].pid) == 0.0  # gone: nothing to say


def test_the_worker_runs_ordinary_whoever_started_the_daemon(tmp_path):
    """A daemon run from a real-time shell (`chrt -f 1 segue run`) hands its policy to what it
    starts; the loop worker must still write loops as an ordinary task, never beside the
    audio at real-time priority."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        pytest.skip("no right to real-time scheduling here")
    try:
        proc, client, _, _ = start_daemon(tmp_path, dict(os.environ), "--no-model", "--output",
                                          "null")  # fmt: skip
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    try:
        worker = status(client)["worker"]
        assert os.sched_getscheduler(worker["pid"]) == os.SCHED_OTHER
        assert _nice(worker["pid"]) == 10
    finally:
        stop(proc)
