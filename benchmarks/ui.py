"""The live view's cost: what a designer's open page costs the machine and the music.

    python benchmarks/ui.py [--quick] [--seconds S] [--clicks N] [--no-model]

Runs `segue run --device jack --ui-port 0` (256-frame blocks on a JACK dummy server) and
Debian's Chromium (headless, software rendering, driven by Playwright, a fresh profile):
1. the quiet cost: CPU of the daemon's process (its loop worker excluded: the page makes
   no loops) with no page open and with one page open, and of every Chromium process with
   the page open against the same Chromium on about:blank; page + server = the two deltas;
2. click → lit node: an event button clicked in the page (performance.now() in the page)
   until the page lights the new state; then `/segue/status` over real UDP must agree;
3. the callback benchmark's load with the page open: callback.py's game (~200 OSC
   messages/s, events, forced states) and designer (a graph edit every 5 s) for the window;
   underruns in the window and the callback's p50 / p99 / p99.9 / max since the stream began.

Fails (exit 1) if page + server CPU > 2 % of a core, a click's lit node takes more than
200 ms (p99) or never comes, /segue/status disagrees, the stream underruns in the loaded
window, or the callback's p99.9 reaches 25 % of the block. Writes benchmarks/results/ui.json.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    BenchError,
    Daemon,
    Jack,
    breach,
    header,
    load_average,
    summary,
    table,
    write_result,
)
from callback import BUDGET_FRACTION, copy_graph, editor, traffic  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip
CPU_BUDGET_PCT = 2.0  # page + server, % of one core
CLICK_BUDGET_MS = 200.0
# Each click's event and the state it leads to from the one before (immediate or quantized:
# the lit node follows the state the daemon reports, which changes when the event applies).
CYCLE = (("enemy_spotted", "combat"), ("player_died", "defeat"), ("respawn", "idle"))
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
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


def total_cpu(pids: list[int]) -> float:
    seconds = 0.0
    for pid in pids:
        try:
            seconds += cpu_seconds(pid)
        except (OSError, IndexError, ValueError):
            continue  # a process that ended: its time is lost to both sides of the delta
    return seconds


def measure(seconds: float, daemon_pid: int, chromium_marker: str) -> tuple[float, float]:
    """(daemon %, Chromium %) of one core over `seconds`."""
    pids = processes_with(chromium_marker)
    d0, c0 = cpu_seconds(daemon_pid), total_cpu(pids)
    time.sleep(seconds)
    d1, c1 = cpu_seconds(daemon_pid), total_cpu(pids)
    return 100 * (d1 - d0) / seconds, 100 * (c1 - c0) / seconds


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
                "budget_p99_9_fraction_of_block": BUDGET_FRACTION}  # fmt: skip
    result = header("ui", settings)
    folder, graph = copy_graph()
    profile = tempfile.mkdtemp(prefix="segue-chromium-")
    counts: dict = {}
    try:
        with Jack(256) as jack, Daemon(jack, graph, use_model=not args.no_model,
                                       extra=("--ui-port", "0")) as daemon:  # fmt: skip
            url = daemon.ready_status.get("ui")
            if not url:
                raise BenchError(f"the daemon serves no live view:\n{daemon.log_tail()}")
            pid = daemon.proc.pid
            with sync_playwright() as p:
                browser = p.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                    viewport={"width": 1400, "height": 1000},
                )  # fmt: skip
                page = browser.new_page()
                page.goto("about:blank")
                time.sleep(1.0)
                daemon_idle, chromium_blank = measure(quiet_s, pid, profile)
                page.goto(url)
                page.wait_for_selector("g.node.current", timeout=15000)
                time.sleep(2.0)
                daemon_page, chromium_page = measure(quiet_s, pid, profile)
                latencies, arrivals, disagreements = click_latencies(page, daemon.client, clicks)
                before = daemon.client.status(timeout=3.0)
                stop = threading.Event()
                workers = [
                    threading.Thread(target=traffic, args=(daemon.port, stop, args.osc_rate,
                                                           counts, 3)),
                    threading.Thread(target=editor, args=(graph, stop, 5.0, counts)),
                ]  # fmt: skip
                for worker in workers:
                    worker.start()
                time.sleep(seconds)
                stop.set()
                for worker in workers:
                    worker.join()
                time.sleep(0.5)
                final = daemon.client.status(timeout=3.0)
                page_live = page.evaluate("() => window.segueView.live")
                page_errors = page.evaluate("() => window.segueView.error")
                browser.close()
        problems = daemon.log_problems()
        daemon.cleanup()
    except BenchError as exc:
        print(f"ui: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(profile, ignore_errors=True)
    if final is None or before is None:
        print(breach("the daemon did not answer /segue/status"), file=sys.stderr)
        return 1
    server_pct = daemon_page - daemon_idle
    page_pct = chromium_page - chromium_blank
    finite = [x for x in latencies if math.isfinite(x)]
    sink = final["sink"]
    timing = sink.get("callback_ms", {})
    block_ms = sink["block_ms"]
    figures = {
        "generator": final.get("generator"),
        "cpu_pct": {"daemon_no_page": round(daemon_idle, 2), "daemon_page": round(daemon_page, 2),
                    "server": round(server_pct, 2), "chromium_blank": round(chromium_blank, 2),
                    "chromium_page": round(chromium_page, 2), "page": round(page_pct, 2),
                    "page_and_server": round(page_pct + server_pct, 2)},
        "click_to_lit_ms": summary(finite, (50, 95, 99)),
        # click → the push carrying the new state arrives (POST, control thread, push, stream)
        "click_to_push_arrived_ms": summary(arrivals, (50, 95, 99)),
        "clicks_never_lit": len(latencies) - len(finite),
        "status_disagreed": disagreements,
        "push_build_ms_last": page_live.get("ui_push_ms"),  # control thread: snapshot + JSON
        "pushes": page_live.get("ui_pushes"),
        "block_ms": block_ms,
        "callback_ms": timing,
        "p99_9_fraction_of_block": round(timing.get("p99_9", math.inf) / block_ms, 4),
        "underruns_at_ready": daemon.ready_status["sink"]["underruns"],
        "underruns_before_load": before["sink"]["underruns"],
        "underruns_in_loaded_window": sink["underruns"] - before["sink"]["underruns"],
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
    if disagreements:
        failures.append(breach(f"/segue/status disagreed with the page after {disagreements} "
                               "click(s)"))  # fmt: skip
    if figures["underruns_in_loaded_window"] > 0:
        failures.append(breach(f"{figures['underruns_in_loaded_window']} underrun(s) with the "
                               "page open under the callback benchmark's load"))  # fmt: skip
    if figures["p99_9_fraction_of_block"] >= BUDGET_FRACTION:
        failures.append(breach(f"callback p99.9 {timing.get('p99_9')} ms ≥ "
                               f"{BUDGET_FRACTION:.0%} of the {block_ms} ms block"))  # fmt: skip
    if figures["mixer_errors"] or problems:
        failures.append(breach(f"errors: mixer {figures['mixer_errors']}, log {problems[:3]}"))
    result["failures"] = failures
    result["passed"] = not failures
    print(f"wrote {write_result('ui', result, args.out)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
