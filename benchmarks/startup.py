"""Process start → the first block of music (not silence) handed to the audio device.

    python benchmarks/startup.py [--runs 5] [--quick] [--no-model]

Starts `segue run --device jack` on the shipped graph (a private JACK dummy server, 48 kHz,
256-frame blocks) `--runs` times. For each run: the time from just before the process is
started to the moment the mixer produced its first block that is not silence (the daemon's
`mixer_first_sound_ns`, CLOCK_MONOTONIC, shared with this process), and which generator wrote
that first loop. Exits 1 when the median run is over the budget (1.5 s) or the first loop was
not the shipped model's (unless --no-model). Writes benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    REPO,
    BenchError,
    Daemon,
    Jack,
    breach,
    header,
    load_average,
    table,
    write_result,
)

GAME = REPO / "statemachines" / "game.yaml"
BUDGET_MS = 1500.0


class FirstSound(Daemon):
    """A daemon counted from process start to its first sound, not to full pools."""

    def start(self) -> FirstSound:
        self.t0_ns = time.monotonic_ns()
        return super().start()


def one_run(jack: Jack, use_model: bool) -> dict:
    daemon = FirstSound(jack, GAME, use_model=use_model)
    try:
        daemon.start()
        status = daemon.ready_status or {}
        rss = daemon.rss()
    finally:
        daemon.stop()
        daemon.cleanup()
    counters = status.get("counters", {})
    first_ns = counters.get("mixer_first_sound_ns", 0)
    return {
        "first_sound_ms": round((first_ns - daemon.t0_ns) / 1e6, 1) if first_ns else None,
        "status_answered_ms": round(daemon.stream_seconds * 1000, 1),
        "pools_full_s": round(daemon.start_seconds, 2),
        "generator_default": status.get("generator_default"),
        "model_fallbacks": counters.get("pool_fallbacks"),
        "synth": status.get("synth"),
        "rss_at_ready_kb": rss["pids"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, help="daemon starts (default 5; quick 3)")
    parser.add_argument("--quick", action="store_true", help="3 runs (CI)")
    parser.add_argument("--no-model", action="store_true", help="rule-based loops")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    settings = {"runs": runs, "graph": GAME.name, "use_model": not args.no_model,
                "budget_ms": BUDGET_MS}  # fmt: skip
    result = header("startup", settings)
    rows = []
    try:
        with Jack(256) as jack:
            for _ in range(runs):
                rows.append(one_run(jack, not args.no_model))
                print(f"  {rows[-1]}", file=sys.stderr)
    except BenchError as exc:
        print(f"startup: {exc}", file=sys.stderr)
        return 2
    failures = []
    times = [r["first_sound_ms"] for r in rows if r["first_sound_ms"] is not None]
    if len(times) < len(rows):
        failures.append(breach("a run reported no first sound"))
    median = statistics.median(times) if times else None
    if median is not None and median > BUDGET_MS:
        failures.append(breach(f"start → first sound median {median:.0f} ms > {BUDGET_MS:.0f} ms"))
    if not args.no_model:
        others = [(r["generator_default"], r["model_fallbacks"]) for r in rows
                  if r["generator_default"] != "model" or r["model_fallbacks"]]  # fmt: skip
        if others:
            failures.append(breach(f"the shipped model did not write the loops: {others}"))
    figures = {"runs": rows, "first_sound_ms_median": median,
               "first_sound_ms_max": max(times) if times else None}  # fmt: skip
    result |= {"figures": figures, "load_average_end": load_average(), "failures": failures,
               "passed": not failures}  # fmt: skip
    print(table([[i + 1, r["first_sound_ms"], r["status_answered_ms"], r["pools_full_s"],
                  r["generator_default"]] for i, r in enumerate(rows)],
                ["run", "first sound ms", "status answered ms", "all pools full s",
                 "generator"]))  # fmt: skip
    print(f"median {median} ms (budget {BUDGET_MS:.0f}); load {result['machine']['load_average']}"
          f" → {result['load_average_end']}")  # fmt: skip
    print(f"wrote {write_result('startup', result, args.out)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
