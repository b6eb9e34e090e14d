"""`segue bench [--quick]`: run every benchmark in benchmarks/ in sequence.

Each benchmark is a script (`python benchmarks/<name>.py [--quick]`) that prints a table,
writes benchmarks/results/<name>.json and exits non-zero on a breach of its budget. This
command runs them one after another in their own processes (so one cannot disturb the
next's measurements) and returns non-zero if any failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
# In the order they run: the short, sensitive ones first, the long soak last.
SUITE = ("latency", "generation", "callback", "soak")


def register(subparsers) -> None:
    """Add `bench` to the `segue` command line."""
    bench = subparsers.add_parser("bench", help="run the benchmarks (latency, generation, "
                                  "callback, soak); non-zero on a budget breach")  # fmt: skip
    bench.add_argument("--quick", action="store_true",
                       help="the CI variant: the whole suite in under 5 minutes")  # fmt: skip
    bench.add_argument("--only", nargs="+", choices=SUITE, metavar="NAME",
                       help=f"run only these ({', '.join(SUITE)})")  # fmt: skip
    bench.add_argument("--no-model", action="store_true", help="rule-based loops everywhere")
    bench.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not BENCHMARKS.is_dir():
        print(f"segue: no benchmarks folder at {BENCHMARKS} (bench runs from a source checkout)",
              file=sys.stderr)  # fmt: skip
        return 2
    names = args.only or SUITE
    env = os.environ | {"PYTHONPATH": os.pathsep.join(
        filter(None, (str(BENCHMARKS.parent), os.environ.get("PYTHONPATH"))))}  # fmt: skip
    outcomes: list[tuple[str, int, float]] = []
    for name in names:
        command = [sys.executable, str(BENCHMARKS / f"{name}.py")]
        command += ["--quick"] if args.quick else []
        command += ["--no-model"] if args.no_model else []
        print(f"\n== {name} ({' '.join(command[1:])})", flush=True)
        t0 = time.monotonic()
        code = subprocess.run(command, env=env, cwd=BENCHMARKS.parent).returncode
        outcomes.append((name, code, time.monotonic() - t0))
    print("\n== summary")
    for name, code, seconds in outcomes:
        verdict = "ok" if code == 0 else ("FAILED" if code == 1 else f"ERROR (exit {code})")
        print(f"{name:<12} {verdict:<16} {seconds:6.1f} s")
    print(f"{'total':<12} {'':<16} {sum(s for _, _, s in outcomes):6.1f} s  "
          f"(results in {BENCHMARKS / 'results'})")  # fmt: skip
    return 0 if all(code == 0 for _, code, _ in outcomes) else 1
