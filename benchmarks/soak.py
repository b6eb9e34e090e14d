"""Minutes of abuse: 1000 OSC messages/s (10 % malformed), a graph edit every 2 s.

    python benchmarks/soak.py [--minutes 10] [--quick] [--rate 1000] [--no-model]

`segue run --device jack` plays a copy of statemachines/game.yaml (in a temp folder) while
this process sends, every second, `--rate` OSC messages: parameter sweeps, events, forced
states, pings and status requests, of which 10 % are malformed (random bytes, truncated
messages, wrong argument types, unknown addresses). Every 2 s the graph file is rewritten,
alternately valid (a tempo change: every state's music is regenerated) and invalid (a YAML
syntax error: the old graph must keep playing).

Reports underruns, counted twice (the daemon's status, and gaps in a capture of what the
JACK device played: a jack_rec client on the daemon's ports), empty-ring polls, the RSS of the
daemon and its worker at start and end, the memory of each process (RSS, RSS less JACK's
shared memory, PSS, clips mapped from /dev/shm), messages sent / received / rejected / dropped
(dropped = sent − received − rejected, where received counts messages that passed
validation), reloads against the valid and invalid edits, exceptions (log lines with
"Traceback" or "error (recovered)", mixer and sink errors) and whether /segue/status still
answers at the end. Exits 1 on any breach: an underrun by either count, an exception, a
dropped message, a rejected count that differs from the malformed count sent, reloads that
differ from the valid edits (or reload errors from the invalid ones), memory growth over 5 %
(each process's private heap, RssAnon, the floor it returns to in the run's last third
against its middle third, once the bounded buffers have filled: `steady_growth`; RSS also
counts the pages of the pools' clips as they are played, which come and go with the loops
and say nothing of a leak), a loop from the rule-based fallback when the model was asked
for, no status at the end, or the processes' RSS (JACK's segment excluded) above
RSS_BUDGET_MB at the end.
Writes benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    REPO,
    BenchError,
    Capture,
    Client,
    Daemon,
    Jack,
    breach,
    generator_breaches,
    header,
    late_polls,
    load_average,
    table,
    underrun_breaches,
    underrun_figures,
    write_result,
)

from engine.control.osc import encode  # noqa: E402

GAME = REPO / "statemachines" / "game.yaml"
MALFORMED_FRACTION = 0.10
EDIT_EVERY_S = 2.0
TICK_S = 0.01  # messages go out in bursts of rate/100 every 10 ms
EVENTS = ("explore", "enemy_spotted", "rest", "enemy_defeated", "enemy_lost", "player_died",
          "respawn", "not_an_event")  # fmt: skip
STATES = ("idle", "explore", "combat", "victory", "defeat")
RSS_BUDGET_MB = 300.0  # the daemon and all its child processes together
BUDGET_RSS_GROWTH = 0.05  # daemon and its children: middle third of the run to the last
# Status and memory samples during the run: often enough that each third of a quick run has
# about 40, so its median sits where the loop worker's heap spends most of its time.
SAMPLE_S, QUICK_SAMPLE_S = 5.0, 1.0
RELOAD_SETTLE_S = 5.0  # after the last edit: the daemon's file watch picks it up


def malformed(rng: random.Random) -> bytes:
    """One datagram the daemon must reject (and count), never crash on."""
    kind = rng.randrange(4)
    if kind == 0:  # random bytes (never a valid OSC start: '/' or '#')
        data = os.urandom(rng.randint(1, 200))
        return (b"\x00" if data[:1] in (b"/", b"#") else b"") + data
    if kind == 1:  # truncated: the type tags promise an argument that is not there
        return encode("/segue/param", "intensity", 0.5)[:-4]
    if kind == 2:  # wrong types
        return encode("/segue/param", "intensity", "loud")
    return encode("/segue/no_such_address", 1)


def valid(rng: random.Random, n: int) -> bytes:
    if n % 200 == 0:
        return encode("/segue/state", rng.choice(STATES))
    if n % 50 == 0:
        return encode("/segue/event", rng.choice(EVENTS))
    if n % 97 == 0:
        return encode("/segue/ping", n)
    return encode("/segue/param", "intensity", 0.5 + 0.5 * math.sin(n / 300))


def sender(port: int, rate: float, stop: threading.Event, counts: dict, seed: int) -> None:
    client = Client(port)
    rng = random.Random(seed)
    per_tick = max(1, round(rate * TICK_S))
    next_at = time.monotonic()
    n = 0
    while not stop.is_set():
        for _ in range(per_tick):
            n += 1
            if rng.random() < MALFORMED_FRACTION:
                client.send_raw(malformed(rng))
                counts["malformed"] += 1
            else:
                client.send_raw(valid(rng, n))
            counts["sent"] += 1
        client.drain()  # pongs and errors: read and dropped
        next_at += TICK_S
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:  # this process fell behind (machine load): don't burst to catch up
            counts["sender_late_s"] += -delay
            next_at = time.monotonic()
    client.close()


def editor(graph: Path, stop: threading.Event, counts: dict) -> None:
    original = graph.read_text()
    n = 0
    while not stop.wait(EDIT_EVERY_S):
        n += 1
        if n % 2:
            graph.write_text(original.replace("tempo: 84", f"tempo: {84 + (n // 2) % 2 * 4}", 1))
            counts["valid_edits"] += 1
        else:
            graph.write_text(original.replace("tempo: 84", "tempo: [84", 1))
            counts["invalid_edits"] += 1
    time.sleep(EDIT_EVERY_S)  # as far apart as the others: the watch must see each edit
    graph.write_text(original)  # the restore is a valid edit too
    counts["valid_edits"] += 1


def steady_growth(samples: list[dict]) -> dict[str, float]:
    """Growth of each process's private heap (RssAnon) once warm: the floor it returns to (the
    low decile of the samples) in the run's last third against its middle third. The first
    third fills what is bounded (the timeline's 10 000 entries, the live view's backlog for a
    late page: about 6 MB in the daemon's first minute at 1000 messages a second). The loop
    worker's heap sits at two levels, about 90 MB between loops and 100-115 MB while it
    renders one; a median lands on either, depending on how much of a third it spent
    rendering (a two-minute CI run: +11.6 % from the medians, +1.0 % from the floors). What
    leaks stays in the floor: 5 MB a minute added to that run's samples reads +11.9 % in the
    daemon and +5.0 % in the worker, 2.5 MB a minute +7.8 % and +3.1 %. Per process, so that
    the worker's swing does not hide a leak in the daemon."""
    growth = {}
    for name in samples[0]["rss_kb_by_process"] if samples else ():
        heaps = [x["rss_kb_by_process"][name][2] for x in samples
                 if name in x["rss_kb_by_process"]]  # fmt: skip
        third = len(heaps) // 3
        if third < 2 or not heaps[0]:
            growth[name] = math.nan  # too short a run to tell (a breach: see main)
            continue
        middle, last = sorted(heaps[third : 2 * third]), sorted(heaps[-third:])
        growth[name] = round(last[third // 10] / middle[third // 10] - 1, 4)
    return growth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, help="length (default 10; quick 2)")
    parser.add_argument("--quick", action="store_true", help="2 minutes (CI)")
    parser.add_argument("--rate", type=float, default=1000.0, help="OSC messages per second")
    parser.add_argument("--no-model", action="store_true", help="rule-based loops in the daemon")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    minutes = args.minutes or (2.0 if args.quick else 10.0)
    settings = {"quick": args.quick, "minutes": minutes, "rate_hz": args.rate,
                "malformed_fraction": MALFORMED_FRACTION, "edit_every_s": EDIT_EVERY_S,
                "graph": GAME.name, "use_model": not args.no_model}  # fmt: skip
    result = header("soak", settings)
    folder = Path(tempfile.mkdtemp(prefix="segue-soak-"))
    shutil.copytree(GAME.parent, folder / "statemachines")
    graph = folder / "statemachines" / GAME.name
    counts = {"sent": 0, "malformed": 0, "valid_edits": 0, "invalid_edits": 0,
              "sender_late_s": 0.0}  # fmt: skip
    samples = []
    try:
        with Jack(256) as jack, Daemon(jack, graph, use_model=not args.no_model) as daemon:
            ready = daemon.ready_status
            rss_start = daemon.rss()
            memory_start = daemon.memory()
            capture = Capture(jack, daemon.folder / "played.wav").start()
            stop = threading.Event()
            workers = [threading.Thread(target=sender, args=(daemon.port, args.rate, stop,
                                                             counts, 11)),
                       threading.Thread(target=editor, args=(graph, stop, counts))]  # fmt: skip
            for w in workers:
                w.start()
            t0 = time.monotonic()
            end = t0 + minutes * 60
            try:
                while (left := end - time.monotonic()) > 0:
                    time.sleep(min(SAMPLE_S if not args.quick else QUICK_SAMPLE_S, left))
                    s = daemon.client.status(timeout=2.0)
                    samples.append({
                        "t_s": round(time.monotonic() - t0, 1), "answered": s is not None,
                        "underruns": s and s["sink"]["underruns"],
                        "rss_kb": daemon.rss()["total_kb"], "load": load_average()[0],
                        "rss_kb_by_process": {name: [m["rss_kb"], m["rss_own_kb"],
                                                     m["heap_kb"] or 0] for name, m
                                              in daemon.memory()["processes"].items()},
                    })  # fmt: skip
                    print(f"  {samples[-1]}", file=sys.stderr)
            finally:
                stop.set()
                for w in workers:
                    w.join()
            # Let the last messages and the restored graph land.
            settle_end = time.monotonic() + RELOAD_SETTLE_S
            final = daemon.client.status(timeout=3.0)
            final_polls = 1
            while (
                final is not None
                and time.monotonic() < settle_end
                and (
                    final["counters"]["reloads"] - ready["counters"]["reloads"]
                    < counts["valid_edits"]
                )
            ):
                time.sleep(0.25)
                final = daemon.client.status(timeout=3.0)
                final_polls += 1
            rss_end = daemon.rss()
            memory_end = daemon.memory()
            played = capture.stop()
        problems = daemon.log_problems()
        log_lines = len(daemon.log_text().splitlines())
        daemon.cleanup()
    except BenchError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    failures = []
    figures = {"samples": samples, "rss_start_kb": rss_start, "rss_end_kb": rss_end,
               "memory_start": memory_start, "memory_end": memory_end,
               "rss_budget_mb": RSS_BUDGET_MB,
               "osc_sent": counts["sent"], "osc_malformed_sent": counts["malformed"],
               "sender_late_s": round(counts["sender_late_s"], 2),
               "valid_edits": counts["valid_edits"], "invalid_edits": counts["invalid_edits"],
               "daemon_log_lines": log_lines, "daemon_log_problems": problems[:20],
               "status_answered_at_end": final is not None}  # fmt: skip
    if final is None:
        failures.append(breach("the daemon did not answer /segue/status at the end"))
    else:
        c, c0 = final["counters"], ready["counters"]

        def delta(key: str) -> int:
            return c.get(key, 0) - c0.get(key, 0)

        # Our status polls are messages too; the ones before readiness are in c0.
        rejected = delta("osc_malformed") + delta("osc_bad_args") + delta("osc_unknown_address")
        received = delta("osc_messages") - delta("osc_bad_args") - delta("osc_unknown_address")
        sent = counts["sent"] + len(samples) + final_polls  # + our status requests
        figures |= {
            "generator": final.get("generator"),
            "osc_received_valid": received, "osc_rejected": rejected,
            "osc_dropped": sent - received - rejected,
            "osc_datagrams": delta("osc_datagrams"),
            "reloads": delta("reloads"), "reload_errors": delta("reload_errors"),
            "transitions": delta("transitions"), "loops_made": delta("pool_made"),
            "underruns": underrun_figures(
                ready, final, played, jack.watch, daemon.ready_at, capture
            ),
            "ring_empty_seen": late_polls(final["sink"]),
            "rss_growth_start_to_end": round(rss_end["total_kb"] / rss_start["total_kb"] - 1, 4),
            "heap_growth": steady_growth(samples),
            "callback_ms": final["sink"].get("callback_ms"),
            "mixer_errors": c.get("mixer_errors", 0), "sink_errors": final["sink"].get("errors", 0),
            "state_at_end": final.get("state"), "last_error": final.get("last_error"),
            "fallbacks": c.get("pool_fallbacks", 0),
        }  # fmt: skip
        failures += underrun_breaches("soak", figures["underruns"])
        failures += generator_breaches(final, not args.no_model)
        if figures["reloads"] != counts["valid_edits"]:
            failures.append(breach(f"{figures['reloads']} reload(s) for {counts['valid_edits']} "
                                   "valid edits"))  # fmt: skip
        if figures["reload_errors"] != counts["invalid_edits"]:
            failures.append(breach(f"{figures['reload_errors']} reload error(s) for "
                                   f"{counts['invalid_edits']} invalid edits"))  # fmt: skip
        for name, growth in figures["heap_growth"].items():
            if not growth <= BUDGET_RSS_GROWTH:  # NaN (too few samples) too
                failures.append(breach(f"the {name}'s heap grew {100 * growth:.1f} % (budget "
                                       f"{100 * BUDGET_RSS_GROWTH:.0f} %)"))  # fmt: skip
        if figures["osc_dropped"] != 0:
            failures.append(breach(f"{figures['osc_dropped']} OSC message(s) dropped"))
        if rejected != counts["malformed"]:
            failures.append(breach(f"rejected {rejected} messages, sent {counts['malformed']} "
                                   "malformed"))  # fmt: skip
        if figures["mixer_errors"] or figures["sink_errors"]:
            failures.append(breach(f"mixer errors {figures['mixer_errors']}, sink errors "
                                   f"{figures['sink_errors']}"))  # fmt: skip
    # The budget is Segue's memory: RSS less the JACK server's shared memory that the daemon
    # maps as a JACK client (about 100 MB with the dummy server; no sound card needs it).
    rss_end_mb = memory_end["total_rss_own_kb"] / 1024
    if rss_end_mb > RSS_BUDGET_MB:
        failures.append(
            breach(
                f"RSS of the daemon and its children {rss_end_mb:.0f} MB > "
                f"{RSS_BUDGET_MB:.0f} MB at the end (JACK's segment excluded)"
            )
        )
    if problems:
        failures.append(breach(f"{len(problems)} exception line(s) in the daemon log: "
                               f"{problems[:2]}"))  # fmt: skip
    result["figures"] = figures
    result["load_average_end"] = load_average()
    result["failures"] = failures
    result["passed"] = not failures
    rows = [["sent", figures["osc_sent"]], ["received (valid)", figures.get("osc_received_valid")],
            ["rejected", figures.get("osc_rejected")], ["dropped", figures.get("osc_dropped")],
            ["graph edits valid / invalid", f"{counts['valid_edits']} / {counts['invalid_edits']}"],
            ["reloads / reload errors",
             f"{figures.get('reloads')} / {figures.get('reload_errors')}"],
            *[[f"  {name}: RSS (less JACK's shm) / PSS / clips mapped MiB (end)",
               f"{m['rss_kb'] / 1024:.1f} ({m['rss_own_kb'] / 1024:.1f}) / "
               f"{(m['pss_kb'] or 0) / 1024:.1f} / {m['clips_mapped_kb'] / 1024:.1f}"]
              for name, m in memory_end["processes"].items()],
            ["RSS less JACK's shm, all processes, MiB (budget)",
             f"{memory_end['total_rss_own_kb'] / 1024:.1f} ({RSS_BUDGET_MB:.0f})"],
            ["underruns: status (start-up) / capture gaps", _underruns(figures)],
            ["  of which inside the host's own stalls: status / capture",
             _host_share(figures)],
            ["empty-ring polls (late producer)", figures.get("ring_empty_seen")],
            ["RSS start / end MiB (JACK's shm included)", f"{rss_start['total_kb'] / 1024:.1f}"
                                                          f" / {rss_end['total_kb'] / 1024:.1f}"],
            ["heap (RssAnon) start / end MiB",
             f"{memory_start['total_heap_kb'] / 1024:.1f} / "
             f"{memory_end['total_heap_kb'] / 1024:.1f}"],
            ["heap growth, middle third → last third of the run (budget "
             f"{100 * BUDGET_RSS_GROWTH:.0f} % each)",
             " · ".join(f"{name} {100 * g:+.1f} %" for name, g
                        in figures.get("heap_growth", {}).items())],
            ["generator / fallbacks", f"{figures.get('generator')} / {figures.get('fallbacks')}"],
            ["exceptions", len(problems) + (figures.get("mixer_errors") or 0)],
            ["status answers at end", figures["status_answered_at_end"]]]  # fmt: skip
    print(table(rows, [f"soak {minutes:g} min at {args.rate:g} msg/s", "value"]))
    print(f"load {result['machine']['load_average']} → {result['load_average_end']}")
    print(f"wrote {write_result('soak', result, args.out)}")
    return 1 if failures else 0


def _host_share(figures: dict) -> str:
    u = figures.get("underruns")
    if not u:
        return "-"
    cap = None if u["capture_gaps"] is None else u["capture_gaps"] - u["capture_unexplained"]
    return f"{u['status_in_host_stalls']} / {cap}"


def _underruns(figures: dict) -> str:
    u = figures.get("underruns")
    if not u:
        return "-"
    return f"{u['status']} ({u['status_at_ready']}) / {u['capture_gaps']}"


if __name__ == "__main__":
    sys.exit(main())
