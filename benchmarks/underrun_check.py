"""The underrun counts can fire: a writer starved on purpose must show in both.

    python benchmarks/underrun_check.py [--seconds 12] [--every 1.5] [--stall-ms 100]

Runs `segue run --device jack` (rule-based loops: start-up is quick) through
benchmarks/_starve.py, which stalls the audio writer for `--stall-ms` every `--every` seconds,
records what the JACK dummy device plays (a jack_rec client on the daemon's ports) and reads
the daemon's status. Passes (exit 0) only when both counts saw the stalls: the capture's
inserted gaps, and the status `underruns` (the sink's own count from the device's clock
against the frames it handed over). A count that stays 0 here could not catch an underrun in
the benchmarks either. Writes benchmarks/results/underrun_check.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    REPO,
    BenchError,
    Capture,
    Daemon,
    Jack,
    breach,
    header,
    late_polls,
    table,
    underrun_breaches,
    underrun_figures,
    write_result,
)

GAME = REPO / "statemachines" / "game.yaml"
STARVE = Path(__file__).resolve().parent / "_starve.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="recorded window")
    parser.add_argument("--every", type=float, default=1.5, help="seconds between stalls")
    parser.add_argument("--stall-ms", type=float, default=100.0, help="length of one stall")
    parser.add_argument("--quick", action="store_true", help="(the same: it is short)")
    parser.add_argument("--no-model", action="store_true", help="(the same: it uses rules)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    settings = {"seconds": args.seconds, "every_s": args.every, "stall_ms": args.stall_ms,
                "graph": GAME.name, "use_model": False}  # fmt: skip
    result = header("underrun_check", settings)
    env = {"SEGUE_STARVE_EVERY_S": str(args.every), "SEGUE_STARVE_MS": str(args.stall_ms)}
    try:
        with Jack(256) as jack, Daemon(jack, GAME, use_model=False, launcher=(str(STARVE),),
                                       env=env) as daemon:  # fmt: skip
            ready = daemon.ready_status
            capture = Capture(jack, daemon.folder / "played.wav").start()
            time.sleep(args.seconds)
            final = daemon.client.status(timeout=3.0)
            played = capture.stop()
            watch, ready_at = jack.watch, daemon.ready_at
        daemon.cleanup()
    except BenchError as exc:
        print(f"underrun_check: {exc}", file=sys.stderr)
        return 2
    stalls = int(args.seconds / args.every)
    status_underruns = (final or {}).get("underruns", 0) - ready.get("underruns", 0)
    # What the other benchmarks gate on: the starved writer's underruns must read as Segue's,
    # not as the host's own stalls (the stall watch sees nothing when only Segue is late).
    split = underrun_figures(ready, final or {}, played, watch, ready_at, capture)
    print("the gate of the other benchmarks, on this starved run (it must refuse it):")
    gate = underrun_breaches("starved writer", split)
    figures = {"stalls_expected": stalls, "capture": played,
               "status_underruns": status_underruns,
               "status_unexplained": split["status_unexplained"],
               "capture_unexplained": split["capture_unexplained"],
               "host_stalls": split["host_stalls"], "gate_breaches": gate,
               "ring_empty_seen": late_polls((final or {}).get("sink", {}))}  # fmt: skip
    failures = []
    if (split["capture_unexplained"] or 0) < stalls - 2 or not gate:
        failures.append(breach(f"the gate took the starved writer's gaps for the host's: "
                               f"{split['capture_unexplained']} of {played['gaps']} gap(s) and "
                               f"{split['status_unexplained']} of {status_underruns} underrun(s) "
                               "left as Segue's"))  # fmt: skip
    # Each stall outlasts the ring by far: each must leave a gap (one may straddle an end).
    if played["gaps"] < stalls - 1:
        failures.append(breach(f"the capture counted {played['gaps']} gap(s) for {stalls} "
                               "stalls"))  # fmt: skip
    if status_underruns < 1:
        failures.append(breach(f"status counted {status_underruns} underrun(s) for {stalls} "
                               "stalls"))  # fmt: skip
    print(
        table(
            [
                [
                    stalls,
                    played["gaps"],
                    played["gap_frames"],
                    status_underruns,
                    figures["ring_empty_seen"],
                ]
            ],
            ["stalls", "capture gaps", "gap frames", "status underruns", "ring empty"],
        )
    )
    result |= {"figures": figures, "failures": failures, "passed": not failures}
    print(f"wrote {write_result('underrun_check', result, args.out)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
