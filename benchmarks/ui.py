"""The live view's cost: what a designer's open page costs the machine and the music.

    python benchmarks/ui.py [--quick] [--seconds S] [--cpu-seconds S] [--clicks N] [--no-model]

Runs `segue run --device jack --ui-port 0` (256-frame blocks on a JACK dummy server) and
Debian's Chromium (headless, software rendering, 1400 x 1000, a fresh profile each time):
1. the quiet cost, page + server, in % of one core:
   - server: CPU of the daemon's live-view threads (segue-ui, segue-ui-http; per thread from
     /proc/<pid>/task/*/stat) + the control thread's CPU in building and writing the pushes
     (it times itself with thread_time: `ui_push_cpu_s`), with one page open;
   - page: CPU of every process of a plain Chromium (no automation: browser, renderer,
     GPU, utility) showing the page, less the same Chromium showing about:blank;
   the daemon's whole-process CPU with and without the page is recorded beside it (its
   audio threads make that difference noise, not a measure);
2. what the page does under Playwright: pushes and pictures per second, its script time;
3. click → lit node: an event button clicked in the page (performance.now() in the page)
   until the page lights the new state; then `/segue/status` over real UDP must agree;
4. the callback benchmark's load with the page open: callback.py's game (~200 OSC
   messages/s, events, forced states) and designer (a graph edit every 5 s) for the window;
   underruns in the window and the callback's p50 / p99 / p99.9 / max since the stream began.

Fails (exit 1) if page + server > 2 % of a core, a click's lit node takes more than 200 ms
(p99) or never comes, /segue/status disagrees, an underrun of Segue's in the loaded window
(one inside a stall of the host itself is reported: benchmarks/_stallwatch.py), or the daemon
logs an error. The callback's timing with the page open is recorded, and a p99.9 of Segue's
blocks >= 25 % of the block printed as REPORTED: it gates with --gate-callback (callback.py is
its gate). Writes benchmarks/results/ui.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    BenchError,
    Daemon,
    Jack,
    breach,
    header,
    host_stall_figures,
    load_average,
    stop_process,
    summary,
    table,
    unexplained,
    write_result,
)
from callback import BUDGET_FRACTION, copy_graph, play_the_game, slow_blocks  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip
CPU_BUDGET_PCT = 2.0  # page + server, % of one core
CLICK_BUDGET_MS = 200.0
PUSH_MIN_HZ = 9.5  # the "≥ 10 Hz", less the rounding of a short window
# Each click's event and the state it leads to from the one before (immediate or quantized:
# the lit node follows the state the daemon reports, which changes when the event applies).
CYCLE = (("enemy_spotted", "combat"), ("player_died", "defeat"), ("respawn", "idle"))
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, task: int | None = None) -> float:
    stat = f"/proc/{pid}/task/{task}/stat" if task else f"/proc/{pid}/stat"
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def processes_with(marker: str) -> list[int]:
    """Every process whose command line holds `marker` (Chromium's profile folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def chromium_cpu(marker: str) -> dict[str, float]:
    """CPU seconds of every Chromium process of this profile, summed by its --type
    (browser, renderer, gpu-process, utility, zygote)."""
    out: dict[str, float] = {}
    for pid in processes_with(marker):
        try:
            # Chromium rewrites its children's command lines into one space-separated string
            args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
            kind = next((a[7:].decode() for a in args if a.startswith(b"--type=")), "browser")
            out[kind] = out.get(kind, 0.0) + cpu_seconds(pid)
        except (OSError, IndexError, ValueError):
            continue  # a process that ended: its time is lost to both sides of the delta
    return out


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of the daemon's threads, summed by the name the OS shows (the live view
    names its own: segue-ui, segue-ui-http)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            out[name] = out.get(name, 0.0) + cpu_seconds(pid, int(task.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _delta(after: dict, before: dict, seconds: float) -> dict[str, float]:
    return {k: round(100 * (after[k] - before.get(k, 0.0)) / seconds, 2) for k in after}


UI_THREADS = ("segue-ui", "segue-ui-http")


def ui_health(url: str) -> dict:
    """The live view's own counters (pushes, bytes, the control thread's CPU in pushes)."""
    with urllib.request.urlopen(url + "api/snapshot", timeout=5) as reply:
        return json.loads(reply.read())["ui"]  # as of now (the health figures lag by 2 s)


def measure(seconds: float, daemon_pid: int, chromium_marker: str, url: str,
            page=None) -> dict:  # fmt: skip
    """% of one core over `seconds`: the daemon's process and threads, Chromium's processes by
    type, the live view's own figures (the control thread's CPU in building pushes, pushes and
    bytes sent) and, with a Playwright page, what the page redrew."""
    draws = "() => window.segueView.draws"
    h0, r0 = ui_health(url), page.evaluate(draws) if page else None
    d0, t0, c0 = cpu_seconds(daemon_pid), thread_cpu(daemon_pid), chromium_cpu(chromium_marker)
    w0 = time.monotonic()
    time.sleep(seconds)
    d1, t1, c1 = cpu_seconds(daemon_pid), thread_cpu(daemon_pid), chromium_cpu(chromium_marker)
    seconds = time.monotonic() - w0
    h1, r1 = ui_health(url), page.evaluate(draws) if page else None
    threads = _delta(t1, t0, seconds)
    chromium = _delta(c1, c0, seconds)
    out = {"seconds": round(seconds, 2), "daemon": round(100 * (d1 - d0) / seconds, 2),
           "daemon_threads": threads,
           "ui_threads": round(sum(threads.get(name, 0.0) for name in UI_THREADS), 2),
           "chromium": round(sum(chromium.values()), 2), "chromium_processes": chromium,
           "push_build": round(100 * (h1["ui_push_cpu_s"] - h0["ui_push_cpu_s"]) / seconds, 2),
           "push_hz": round((h1["ui_pushes"] - h0["ui_pushes"]) / seconds, 1),
           "pushed_bytes_per_s": round((h1["ui_bytes"] - h0["ui_bytes"]) / seconds),
           "pages": h1["ui_pages"]}  # fmt: skip
    if r0 and r1:
        out["page_per_s"] = {k: round((r1[k] - r0.get(k, 0)) / seconds, 2) for k in r1}
    return out


def plain_chromium(profile: str, url: str) -> subprocess.Popen:
    """Chromium with no automation attached: what a designer's browser costs (Playwright's
    DevTools connection reports every pushed message to its driver, at a cost of its own)."""
    return subprocess.Popen([CHROMIUM, *CHROMIUM_ARGS, f"--user-data-dir={profile}",
                             "--window-size=1400,1000", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def click_latencies(page, client, clicks: int) -> tuple[list[float], list[float], int]:
    """Lit-node latency per click (ms, the page's clock), the part of it spent before the push
    that carried the new state reached the page, and how often status disagreed."""
    latencies, arrivals, disagreements = [], [], 0
    for n in range(clicks):
        event, target = CYCLE[n % len(CYCLE)]
        started = page.evaluate(
            """(event) => { const t = performance.now();
                 document.querySelector(`button[data-event="${event}"]`).click(); return t; }""",
            event,
        )
        try:
            page.wait_for_function(
                "([state, t]) => window.segueView.litState === state && window.segueView.litAt > t",
                arg=[target, started], timeout=2000, polling=5,
            )  # fmt: skip
            lit, arrived = page.evaluate(
                "() => [window.segueView.litAt, window.segueView.stateMessageAt]"
            )
            latencies.append(lit - started)
            arrivals.append(arrived - started)
        except Exception:  # noqa: BLE001 - a click that never lit counts as a failure
            latencies.append(math.inf)
        status = client.status(timeout=2.0)
        if status is None or status["state"] != target:
            disagreements += 1
        time.sleep(0.3)
    return latencies, arrivals, disagreements


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows (CI)")
    parser.add_argument("--seconds", type=float, help="loaded window (default 60, quick 30)")
    parser.add_argument("--cpu-seconds", type=float,
                        help="each quiet window (default 20, quick 10)")  # fmt: skip
    parser.add_argument("--clicks", type=int, help="event clicks (default 60, quick 30)")
    parser.add_argument("--no-model", action="store_true", help="rule-based loops in the daemon")
    parser.add_argument("--osc-rate", type=float, default=200.0)
    parser.add_argument("--gate-callback", action="store_true",
                        help="fail on the callback's breaches with the page open, too")  # fmt: skip
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    seconds = args.seconds or (30.0 if args.quick else 60.0)
    quiet_s = args.cpu_seconds or (10.0 if args.quick else 20.0)
    clicks = args.clicks or (30 if args.quick else 60)
    if not Path(CHROMIUM).exists():
        print("ui: Debian's chromium is not installed (`make setup` installs it)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    settings = {"quick": args.quick, "loaded_seconds": seconds, "quiet_seconds": quiet_s,
                "clicks": clicks, "osc_rate_hz": args.osc_rate, "edit_every_s": 5.0,
                "use_model": not args.no_model, "block_frames": 256, "browser": CHROMIUM,
                "browser_args": CHROMIUM_ARGS, "viewport": [1400, 1000],
                "budget_cpu_pct": CPU_BUDGET_PCT, "budget_click_p99_ms": CLICK_BUDGET_MS,
                "budget_push_min_hz": PUSH_MIN_HZ,
                "budget_p99_9_fraction_of_block": BUDGET_FRACTION,
                "gate_callback": args.gate_callback}  # fmt: skip
    result = header("ui", settings)
    folder, graph = copy_graph()
    profiles = {key: tempfile.mkdtemp(prefix=f"segue-chromium-{key}-")
                 for key in ("blank", "page", "playwright")}  # fmt: skip
    quiet: dict = {}
    counts: dict = {}
    try:
        with Jack(256) as jack, Daemon(jack, graph, use_model=not args.no_model,
                                       extra=("--ui-port", "0")) as daemon:  # fmt: skip
            url = daemon.ready_status.get("ui")
            if not url:
                raise BenchError(f"the daemon serves no live view:\n{daemon.log_tail()}")
            pid = daemon.proc.pid
            # 1. quiet: the same plain browser on about:blank, then on the page
            for target, key in (("about:blank", "blank"), (url, "page")):
                browser = plain_chromium(profiles[key], target)
                try:
                    time.sleep(8.0)  # start-up and first drawing settle (4-6 s on a busy host)
                    quiet[key] = measure(quiet_s, pid, profiles[key], url)
                finally:
                    stop_process(browser, grace_s=10.0)
            blank, on_page = quiet["blank"], quiet["page"]
            if on_page["pages"] != 1:  # a browser that never opened the page costs nothing
                raise BenchError(f"the plain Chromium did not keep the page open "
                                 f"({on_page['pages']} page(s) on the stream)")  # fmt: skip
            with sync_playwright() as p:
                browser = p.chromium.launch_persistent_context(
                    profiles["playwright"], executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                    headless=True, viewport={"width": 1400, "height": 1000},
                )  # fmt: skip
                page = browser.new_page()
                page.goto(url)
                page.wait_for_selector("g.node.current", timeout=15000)
                time.sleep(2.0)
                # what the page redraws, and what the same page costs under Playwright
                driven = measure(quiet_s / 2, pid, profiles["playwright"], url, page)
                latencies, arrivals, disagreements = click_latencies(page, daemon.client, clicks)
                before = daemon.client.status(timeout=3.0)
                loaded_from = time.monotonic()
                play_the_game(daemon.port, graph, seconds, args.osc_rate, counts)
                final = daemon.client.status(timeout=3.0)
                page_health = page.evaluate("() => window.segueView.health")
                page_errors = page.evaluate("() => window.segueView.error")
                browser.close()
            windows = jack.watch.windows() if jack.watch else []
            stall_figures = host_stall_figures(jack.watch, loaded_from, time.monotonic())
            slow = slow_blocks(final["sink"], loaded_from, jack.watch) if final else {}
        problems = daemon.log_problems()
        daemon.cleanup()
    except BenchError as exc:
        print(f"ui: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for profile in profiles.values():
            shutil.rmtree(profile, ignore_errors=True)
    if final is None or before is None:
        print(breach("the daemon did not answer /segue/status"), file=sys.stderr)
        return 1
    # server: the live view's threads + the control thread's time building pushes, page open
    server_pct = on_page["ui_threads"] + on_page["push_build"]
    page_pct = on_page["chromium"] - blank["chromium"]  # the page, less the browser's idling
    finite = [x for x in latencies if math.isfinite(x)]
    sink = final["sink"]
    timing = sink.get("callback_ms", {})
    block_ms = sink["block_ms"]
    figures = {
        "generator": final.get("generator"),
        "cpu_pct": {"server": round(server_pct, 2), "page": round(page_pct, 2),
                    "page_and_server": round(page_pct + server_pct, 2),
                    "server_threads": on_page["ui_threads"],
                    "server_push_build": on_page["push_build"],
                    "daemon_no_page": blank["daemon"], "daemon_page": on_page["daemon"],
                    "daemon_delta_unattributed": round(on_page["daemon"] - blank["daemon"], 2),
                    "chromium_blank": blank["chromium"], "chromium_page": on_page["chromium"]},
        "no_page": blank,
        "page_open": on_page,
        "page_open_under_playwright": driven,
        "click_to_lit_ms": summary(finite, (50, 95, 99)),
        # click → the push carrying the new state arrives (POST, control thread, push, stream)
        "click_to_push_arrived_ms": summary(arrivals, (50, 95, 99)),
        "clicks_never_lit": len(latencies) - len(finite),
        "status_disagreed": disagreements,
        "push_build_ms_last": page_health.get("ui_push_ms"),  # control thread: snapshot + JSON
        "pushes": page_health.get("ui_pushes"),
        "block_ms": block_ms,
        "callback_ms": timing,
        "p99_9_fraction_of_block": round(timing.get("p99_9", math.inf) / block_ms, 4),
        "underruns_at_ready": daemon.ready_status["sink"]["underruns"],
        "underruns_before_load": before["sink"]["underruns"],
        "underruns_in_loaded_window": sink["underruns"] - before["sink"]["underruns"],
        "underruns_split": unexplained(sink["underruns"] - before["sink"]["underruns"],
                                       sink.get("underrun_times", []), loaded_from, windows),
        "slow_blocks": slow,
        "host_stalls": stall_figures,
        "underruns_total": sink["underruns"],
        "osc_sent": counts.get("sent", 0),
        "graph_edits": counts.get("edits", 0),
        "mixer_errors": final["counters"].get("mixer_errors", 0),
        "page_error_shown_at_end": page_errors,
        "daemon_log_problems": problems,
    }  # fmt: skip
    result["figures"] = figures
    result["load_average_end"] = load_average()
    cpu = figures["cpu_pct"]
    clicks_ms = figures["click_to_lit_ms"]
    print(table([[cpu["server"], cpu["page"], cpu["page_and_server"], clicks_ms.get("p50"),
                  clicks_ms.get("p99"), clicks_ms.get("max"), timing.get("p99_9"),
                  figures["underruns_in_loaded_window"]]],
                ["server %", "page %", "page+server %", "click p50 ms", "click p99 ms",
                 "click max ms", "callback p99.9 ms", "underruns"]))  # fmt: skip
    print(f"\ndaemon {cpu['daemon_no_page']} % without a page, {cpu['daemon_page']} % with one; "
          f"chromium {cpu['chromium_blank']} % on about:blank, {cpu['chromium_page']} % on the "
          f"page; {len(latencies)} clicks, status disagreed {disagreements}; loaded window "
          f"{seconds:.0f} s: {figures['osc_sent']} OSC messages, {figures['graph_edits']} edits; "
          f"load {result['machine']['load_average']} → {result['load_average_end']}")  # fmt: skip
    print(f"server: threads {cpu['server_threads']} %, pushes {cpu['server_push_build']} % "
          f"({on_page['push_hz']} a second, {on_page['pushed_bytes_per_s']} B/s); page by "
          f"process {on_page['chromium_processes']}; under Playwright the page did "
          f"{driven.get('page_per_s')} a second")  # fmt: skip
    failures = []
    if cpu["page_and_server"] > CPU_BUDGET_PCT:
        failures.append(breach(f"page + server cost {cpu['page_and_server']} % of a core > "
                               f"{CPU_BUDGET_PCT} % (server {cpu['server']} %, page "
                               f"{cpu['page']} %)"))  # fmt: skip
    if figures["clicks_never_lit"] or clicks_ms.get("p99", math.inf) > CLICK_BUDGET_MS:
        failures.append(
            breach(
                f"click → lit node p99 {clicks_ms.get('p99')} ms (budget "
                f"{CLICK_BUDGET_MS:.0f}), {figures['clicks_never_lit']} never lit"
            )
        )
    if on_page["push_hz"] < PUSH_MIN_HZ:
        failures.append(breach(f"{on_page['push_hz']} pushes a second to the open page < "
                               f"{PUSH_MIN_HZ}"))  # fmt: skip
    if disagreements:
        failures.append(breach(f"/segue/status disagreed with the page after {disagreements} "
                               "click(s)"))  # fmt: skip
    # The callback's figures with the page open, against callback.py's budgets.
    # Underruns and slow blocks inside a stall of the host itself are reported, not Segue's
    # (benchmarks/_stallwatch.py); Segue's own underruns with the page open fail the run.
    split = figures["underruns_split"]
    if split["in_host_stalls"] or slow.get("host"):
        print(
            f"HOST STALLS: ui: {split['in_host_stalls']} underrun(s) and {slow.get('host')} "
            "slow block(s) inside stalls of the host itself - reported",
            file=sys.stderr,
        )
    if split["unexplained"]:
        failures.append(breach(f"{split['unexplained']} underrun(s) of Segue's with the page "
                               f"open under the callback benchmark's load ({split['count']} "
                               "in all)"))  # fmt: skip
    reported = []
    allowed = max(1, int(seconds * 48000 / 256) // 1000)
    if slow.get("segue") is None or slow["segue"] > allowed:
        reported.append(f"callback p99.9 ≥ {BUDGET_FRACTION:.0%} of the {block_ms} ms block "
                        f"with the page open: {slow.get('segue')} slow block(s) of Segue's, "
                        f"{allowed} allowed (p99.9 of all {timing.get('p99_9')} ms)")  # fmt: skip
    for line in reported:
        if args.gate_callback:
            failures.append(breach(line))
        else:
            print(f"REPORTED (callback.py gates it): {line}", file=sys.stderr)
    result["callback_breaches"] = reported
    if figures["mixer_errors"] or problems:
        failures.append(breach(f"errors: mixer {figures['mixer_errors']}, log {problems[:3]}"))
    result["failures"] = failures
    result["passed"] = not failures
    print(f"wrote {write_result('ui', result, args.out)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
