"""Chaos: the daemon as shipped (model in its worker, JACK device) under the faults a game's
surroundings bring, and what the game notices.

1. **Worker kills**: the loop worker is SIGKILLed at random moments (some while a new worker
   is still loading); right after each kill the game forces a state. Every command must be
   applied within 200 ms (a status with an id, asked right after, shows it: the control
   thread applies commands in order), and loops made by the model must come back within 5 s.
2. **Device losses**: the JACK server is killed and started again. Each loss must be reported
   (/segue/error) within 1 s, beats must keep reaching a subscriber during the outage, and
   the device must play again (its read index moving) after the server returns.
3. **Floods** of 40 000 datagrams/s (random bytes, truncated, bit-flipped, oversized, valid
   commands, status requests, subscriptions) from another process, on the device sink and
   on the null sink: 0 underruns (counted where the device reads), status still answered,
   every datagram the kernel delivered counted as a message or a reject, kernel drops
   counted, subscribers never above the cap.
4. **A reload storm**: the graph rewritten every 50 ms, valid and broken by turns.
5. **SIGTERM with the device dead**: the daemon must be gone within 2 s.

Underruns are counted outside the device-loss windows (a lost device plays nothing), and each
is set beside the host's own stalls (benchmarks/_stallwatch.py): one inside a stall of the
virtual machine itself is reported as the host's, any other is Segue's. Prints a table, writes
benchmarks/results/chaos.json; exit 1 on a lost command, a crash, a hang, or an underrun of
Segue's outside a fault window; 2 if it could not run.

    python benchmarks/chaos.py [--quick] [--kills N] [--losses N] [--flood-seconds S]
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    REPO,
    BenchError,
    Client,
    Daemon,
    Jack,
    breach,
    children,
    header,
    summary,
    table,
    unexplained,
    write_result,
)

from engine.control.osc import encode  # noqa: E402

GAME = REPO / "statemachines" / "game.yaml"
STATES = ("idle", "explore", "combat", "victory", "defeat")
COMMAND_BUDGET_MS = 200.0
MODEL_BACK_S = 5.0
LOSS_REPORT_S = 1.0
SIGTERM_S = 2.0
FLOOD_RATE = 40_000
SUBSCRIBER_CAP = 32

_ids = itertools.count(1)


def status(client: Client, timeout: float = 2.0) -> dict | None:
    """The reply to this very request (matched by id)."""
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


def wait_status(client: Client, predicate, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = status(client, 1.0)
        if reply is not None and predicate(reply):
            return reply
        time.sleep(0.02)
    return None


def _loop_workers(daemon_pid: int) -> list[int]:
    """The daemon's loop-worker processes (not its device host or resource tracker)."""
    found = []
    for pid in children(daemon_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.append(pid)
    return found


# -- 1. worker kills ------------------------------------------------------------------------


def worker_kills(daemon: Daemon, jack: Jack, kills: int, rng: random.Random,
                 failures: list) -> dict:  # fmt: skip
    client = daemon.client
    command_ms, back_s = [], []
    during_restart = 0
    start = status(client) or {"sink": {"underruns": 0}}
    started_at = time.monotonic()
    for n in range(kills):
        before = status(client)
        if before is None:
            failures.append(breach(f"kill {n}: no status before the kill"))
            break
        worker = before["worker"]
        if worker["state"] != "ready":
            during_restart += 1
        for pid in _loop_workers(daemon.proc.pid):  # the one working, or the one loading
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed_at = time.monotonic()
        target = rng.choice([s for s in STATES if s != before["state"]])
        sent = time.monotonic()
        client.send("/segue/state", target)
        after = status(client)
        if after is None or after["state"] != target:
            failures.append(breach(f"kill {n}: /segue/state {target} not applied "
                                   f"(state {after and after['state']})"))  # fmt: skip
        else:
            command_ms.append((time.monotonic() - sent) * 1000)
        # Model loops again: a new worker, ready, has made a loop since the kill.
        made = after["counters"]["pool_made"] if after else 0
        back = wait_status(client, lambda s, old=worker["pid"], made=made:
                           s["worker"]["state"] == "ready" and s["worker"]["pid"] != old
                           and s["worker"]["generator"] == "model"
                           and s["counters"]["pool_made"] > made, 30)  # fmt: skip
        if back is None:
            failures.append(breach(f"kill {n}: no model loop within 30 s"))
        else:
            back_s.append(time.monotonic() - killed_at)
        # The next kill at a random moment: sometimes while the worker is loading again.
        time.sleep(rng.uniform(0.0, 1.5))
    final = status(client) or {}
    worker = final.get("worker", {})
    # No fault window for the audio: the worker is another process.
    underruns = segue_underruns("worker kills", start, final, started_at, jack, failures)
    figures = {
        "underruns": underruns,
        "kills": kills, "kills_while_restarting": during_restart,
        "deaths_counted": worker.get("deaths"), "restarts": worker.get("restarts"),
        "command_ms": summary(command_ms), "commands_applied": len(command_ms),
        "model_back_s": summary(back_s),
    }  # fmt: skip
    if command_ms and max(command_ms) > COMMAND_BUDGET_MS:
        failures.append(breach(f"a command took {max(command_ms):.0f} ms during a worker "
                               f"restart (budget {COMMAND_BUDGET_MS:.0f} ms)"))  # fmt: skip
    if back_s and max(back_s) > MODEL_BACK_S:
        failures.append(breach(f"model loops came back {max(back_s):.1f} s after a kill "
                               f"(budget {MODEL_BACK_S:.0f} s)"))  # fmt: skip
    return figures


def segue_underruns(label: str, before: dict, after: dict, since: float, jack: Jack,
                    failures: list) -> dict:  # fmt: skip
    """Underruns between two statuses, split into the host's own stalls (reported) and
    Segue's (a breach): see benchmarks/_harness.py, `StallWatch`."""
    count = after.get("sink", {}).get("underruns", 0) - before.get("sink", {}).get("underruns", 0)
    split = unexplained(count, after.get("sink", {}).get("underrun_times", []), since,
                        jack.watch.windows() if jack.watch else [])  # fmt: skip
    if split["in_host_stalls"]:
        print(f"HOST STALLS: {label}: {split['in_host_stalls']} underrun(s) inside stalls of the "
              "host itself - not Segue's, reported", file=sys.stderr)  # fmt: skip
    if split["unexplained"]:
        failures.append(breach(f"{label}: {split['unexplained']} underrun(s) outside any stall "
                               f"of the host ({count} in all)"))  # fmt: skip
    return split


# -- 2. device losses -----------------------------------------------------------------------


def device_losses(daemon: Daemon, jack: Jack, losses: int, failures: list) -> dict:
    listener = Client(daemon.port)
    listener.send("/segue/subscribe", listener.port)
    report_s, resume_s, beats_during = [], [], []
    fault_underruns = 0
    for n in range(losses):
        before = status(daemon.client)
        jack.proc.kill()
        jack.proc.wait(5)
        lost_at = time.monotonic()
        error = listener.receive("/segue/error", timeout=5)
        if error is None or "audio device lost" not in error[0]:
            failures.append(breach(f"loss {n}: not reported within 5 s"))
        else:
            report_s.append(time.monotonic() - lost_at)
        beats = 0
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            if listener.receive("/segue/beat", timeout=deadline - time.monotonic()):
                beats += 1
        beats_during.append(beats)
        jack.start()
        back_at = time.monotonic()
        played = wait_status(daemon.client, lambda s: s["sink"]["state"] == "playing", 30)
        if played is None:
            failures.append(breach(f"loss {n}: the device did not play again within 30 s"))
            break
        index = played["sink"]["read_index"]
        moving = wait_status(
            daemon.client, lambda s, i=index: s["sink"]["read_index"] > i + 4800, 10
        )
        if moving is None:
            failures.append(breach(f"loss {n}: the device reopened but does not read"))
            break
        resume_s.append(time.monotonic() - back_at)
        time.sleep(1.0)  # the fault window closes a second after the device plays again
        after = status(daemon.client)
        fault_underruns += after["sink"]["underruns"] - before["sink"]["underruns"]
    listener.close()
    if report_s and max(report_s) > LOSS_REPORT_S:
        failures.append(breach(f"a device loss was reported after {max(report_s):.2f} s "
                               f"(budget {LOSS_REPORT_S:.0f} s)"))  # fmt: skip
    if beats_during and min(beats_during) == 0:
        failures.append(breach("no beat reached the game during a device loss"))
    return {"losses": losses, "report_s": summary(report_s), "resume_s": summary(resume_s),
            "beats_in_2s_outage": beats_during,
            "underruns_in_fault_windows": fault_underruns}  # fmt: skip


# -- 3. floods --------------------------------------------------------------------------------


def _hostile(rng: random.Random, valid: list[bytes]) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return os.urandom(rng.randint(1, 300))
    if kind == 1:  # truncated
        data = rng.choice(valid)
        return data[: rng.randint(1, max(1, len(data) - 1))]
    if kind == 2:  # bit-flipped
        data = bytearray(rng.choice(valid))
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == 3:  # oversized
        return b"/segue/event\x00\x00\x00\x00,s\x00\x00" + b"x" * rng.randint(2000, 60000)
    return rng.choice(valid)


def _flood(port: int, seconds: float, rate: int, seed: int, sent) -> None:
    """Another process: `rate` datagrams/s for `seconds`, paced in 1 ms slices."""
    rng = random.Random(seed)
    valid = [encode("/segue/param", "intensity", 0.5), encode("/segue/event", "player_hit"),
             encode("/segue/state", "explore"), encode("/segue/status"),
             encode("/segue/ping", 1)]  # fmt: skip
    valid += [encode("/segue/subscribe", p) for p in range(40000, 40100)]
    datagrams = [_hostile(rng, valid) for _ in range(5000)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    target = ("127.0.0.1", port)
    count, start = 0, time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate)
        while count < due:
            try:
                sock.sendto(datagrams[count % len(datagrams)], target)
            except OSError:
                pass
            count += 1
        time.sleep(0.001)
    sent.value = count


def flood(daemon: Daemon, jack: Jack, seconds: float, failures: list, label: str) -> dict:
    before = status(daemon.client)
    started_at = time.monotonic()
    sent = multiprocessing.Value("q", 0)
    sender = multiprocessing.Process(target=_flood, args=(daemon.port, seconds, FLOOD_RATE, 7,
                                                          sent))  # fmt: skip
    sender.start()
    answered, asked, subscribers_max = 0, 0, 0
    while sender.is_alive():
        asked += 1
        # A flood fills the socket's buffer and the kernel drops at random, our requests
        # too: a game asks again, as here (five tries in two and a half seconds).
        reply = None
        for _ in range(5):
            reply = reply or status(daemon.client, 0.5)
        if reply is not None:
            answered += 1
            subscribers_max = max(subscribers_max, reply["counters"]["osc_subscribers"])
        time.sleep(0.5)
    sender.join()
    time.sleep(0.5)
    after = status(daemon.client, 5.0)
    if after is None:
        failures.append(breach(f"{label}: no status after the flood"))
        return {}
    subscribers_max = max(subscribers_max, after["counters"]["osc_subscribers"])
    c0, c1 = before["counters"], after["counters"]

    def delta(key: str) -> int:
        return (c1.get(key) or 0) - (c0.get(key) or 0)

    underruns = segue_underruns(label, before, after, started_at, jack, failures)
    rejects = sum(delta(k) for k in ("osc_malformed", "osc_unknown_address", "osc_bad_args",
                                     "osc_rate_limited", "osc_refused_senders"))  # fmt: skip
    figures = {
        "sent": sent.value, "datagrams_received": delta("osc_datagrams"),
        "kernel_drops": delta("osc_kernel_drops"), "messages": delta("osc_messages"),
        "rejects": rejects, "rate_limited": delta("osc_rate_limited"),
        "subscribers_max": subscribers_max, "subscribers_evicted": delta("osc_subscribers_evicted"),
        "status_answered": f"{answered}/{asked}", "underruns": underruns,
        "receive_busy_windows": delta("osc_busy_windows"), "shed": delta("osc_shed"),
    }  # fmt: skip
    accounted = figures["datagrams_received"] + figures["kernel_drops"]
    if answered < 0.9 * asked:  # each poll is five tries: the kernel's drops are random
        failures.append(breach(f"{label}: status answered {answered} of {asked} times"))
    if subscribers_max > SUBSCRIBER_CAP:
        failures.append(breach(f"{label}: {subscribers_max} subscribers (cap {SUBSCRIBER_CAP})"))
    if accounted < 0.99 * sent.value:
        failures.append(breach(f"{label}: {sent.value - accounted} datagrams neither received "
                               "nor counted as kernel drops"))  # fmt: skip
    return figures


# -- 4. reload storm ----------------------------------------------------------------------------


def reload_storm(daemon: Daemon, jack: Jack, graph: Path, seconds: float,
                 failures: list) -> dict:  # fmt: skip
    before = status(daemon.client)
    started_at = time.monotonic()
    original = graph.read_text()
    edits = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        edits += 1
        if edits % 2:
            graph.write_text(original.replace("tempo: 84", f"tempo: {80 + edits % 9}", 1))
        else:
            graph.write_text(original.replace("tempo: 84", "tempo: [84", 1))
        time.sleep(0.05)
    graph.write_text(original)
    time.sleep(1.0)
    after = status(daemon.client, 5.0)
    if after is None:
        failures.append(breach("reload storm: no status afterwards"))
        return {}
    underruns = segue_underruns("reload storm", before, after, started_at, jack, failures)
    c0, c1 = before["counters"], after["counters"]
    return {"edits": edits, "reloads": c1["reloads"] - c0["reloads"],
            "reload_errors": c1["reload_errors"] - c0["reload_errors"],
            "underruns": underruns}  # fmt: skip


# -- 5. SIGTERM with a dead device -----------------------------------------------------------


def sigterm_dead_device(daemon: Daemon, jack: Jack, failures: list) -> dict:
    jack.proc.kill()
    jack.proc.wait(5)
    wait_status(daemon.client, lambda s: s["sink"]["state"] != "playing", 5)
    t0 = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    try:
        daemon.proc.wait(10)
    except Exception:  # noqa: BLE001 - a hang is the finding
        daemon.proc.kill()
        failures.append(breach("SIGTERM with a dead device: still running after 10 s"))
        return {"exit_s": None}
    seconds = time.monotonic() - t0
    if seconds > SIGTERM_S:
        failures.append(breach(f"SIGTERM with a dead device took {seconds:.2f} s "
                               f"(budget {SIGTERM_S:.0f} s)"))  # fmt: skip
    return {"exit_s": round(seconds, 3), "exit_code": daemon.proc.returncode}


def _split(underruns: dict | None) -> str:
    if not underruns:
        return "-"
    return f"{underruns['unexplained']} / {underruns['in_host_stalls']}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI variant (about 3 minutes)")
    parser.add_argument("--kills", type=int)
    parser.add_argument("--losses", type=int)
    parser.add_argument("--flood-seconds", type=float)
    parser.add_argument("--no-model", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    kills = args.kills or (10 if args.quick else 100)
    losses = args.losses or (2 if args.quick else 10)
    flood_s = args.flood_seconds or (10.0 if args.quick else 60.0)
    settings = {"kills": kills, "losses": losses, "flood_seconds": flood_s,
                "flood_rate": FLOOD_RATE, "model": not args.no_model}  # fmt: skip
    result = header("chaos", settings)
    failures: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="segue-chaos-"))
    shutil.copytree(GAME.parent, folder / "graph")
    graph = folder / "graph" / "game.yaml"
    rng = random.Random(1)
    # A fixed server name: JACK frees a killed server's registry slot only when a server of
    # the same name starts again.
    jack = Jack(name="segue-chaos")
    try:
        jack.start()
        with Daemon(jack, graph, use_model=not args.no_model) as daemon:
            result["worker_kills"] = worker_kills(daemon, jack, kills, rng, failures)
            result["flood_device"] = flood(daemon, jack, flood_s, failures, "flood (device)")
            result["reload_storm"] = reload_storm(daemon, jack, graph, min(flood_s, 10.0), failures)
            result["device_losses"] = device_losses(daemon, jack, losses, failures)
            result["sigterm_dead_device"] = sigterm_dead_device(daemon, jack, failures)
            problems = daemon.log_problems()
            if problems:
                failures.append(breach(f"tracebacks in the daemon's log: {problems[:3]}"))
        jack.start()
        with Daemon(jack, graph, use_model=not args.no_model, extra=("--output", "null")) as d:
            result["flood_null"] = flood(d, jack, flood_s, failures, "flood (null sink)")
            if d.proc.poll() is not None:
                failures.append(breach("the daemon exited during the null-sink flood"))
    except BenchError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    finally:
        jack.stop()
        shutil.rmtree(folder, ignore_errors=True)
    result["failures"] = failures
    path = write_result("chaos", result, args.out)
    k, f, n = result["worker_kills"], result["flood_device"], result["flood_null"]
    d = result["device_losses"]
    print(table([
        ["worker kills (during a restart)", f"{k['kills']} ({k['kills_while_restarting']})"],
        ["command applied, p99 / max ms", f"{k['command_ms'].get('p99')} / "
                                          f"{k['command_ms'].get('max')}"],
        ["model loops back, p99 / max s", f"{k['model_back_s'].get('p99')} / "
                                          f"{k['model_back_s'].get('max')}"],
        ["device losses: reported, max s", f"{d['losses']}: {d['report_s'].get('max')}"],
        ["device back after the server, max s", d["resume_s"].get("max")],
        ["beats in each 2 s outage", d["beats_in_2s_outage"]],
        ["flood (device): sent / received / kernel drops",
         f"{f.get('sent')} / {f.get('datagrams_received')} / {f.get('kernel_drops')}"],
        ["flood (device): underruns Segue's / host's, status answered",
         f"{_split(f.get('underruns'))}, {f.get('status_answered')}"],
        ["flood (null): underruns Segue's / host's, status answered",
         f"{_split(n.get('underruns'))}, {n.get('status_answered')}"],
        ["subscribers max (cap)", f"{max(f.get('subscribers_max', 0), n.get('subscribers_max', 0))}"
                                  f" ({SUBSCRIBER_CAP})"],
        ["reload storm: edits / reloads / errors", "{edits} / {reloads} / {reload_errors}".format(
            **result["reload_storm"]) if result["reload_storm"] else "-"],
        ["SIGTERM with a dead device, s", result["sigterm_dead_device"].get("exit_s")],
    ], ["chaos", "figure"]))  # fmt: skip
    print(f"results: {path}")
    if failures:
        print(f"FAIL: {len(failures)} breach(es)", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
