"""`segue bench [--quick]`: run every benchmark in benchmarks/ in sequence.

Each benchmark is a script (`python benchmarks/<script>.py [--quick]`) that prints a table,
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

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
# In the order a full run takes them (`--only` keeps the order it is given): first the proof that
# the underrun counts can fire, then the short, sensitive ones, the long soak last.
# Name → script in benchmarks/.
SCRIPTS = {
    "underruns": "underrun_check.py",
    "latency": "latency.py",
    "generation": "generation.py",
    "model": "bench_model.py",
    "callback": "callback.py",
    "ui": "ui.py",
    "soak": "soak.py",
    "chaos": "chaos.py",
}
SUITE = tuple(SCRIPTS)
NEEDS_MODEL = ("model",)  # skipped with --no-model: they measure the model itself


def register(subparsers) -> None:
    """Add `bench` to the `segue` command line."""
    bench = subparsers.add_parser("bench", help=f"run the benchmarks ({', '.join(SUITE)}); "
                                  "non-zero on a breach")  # fmt: skip
    bench.add_argument("--quick", action="store_true",
                       help="the CI variant: the whole suite in about 9 minutes")  # fmt: skip
    bench.add_argument("--only", nargs="+", choices=SUITE, metavar="NAME",
                       help=f"run only these ({', '.join(SUITE)})")  # fmt: skip
    bench.add_argument("--no-model", action="store_true", help="rule-based loops everywhere")
    bench.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not BENCHMARKS.is_dir():
        print(f"segue: no benchmarks folder at {BENCHMARKS} (bench runs from a source checkout)",
              file=sys.stderr)  # fmt: skip
        return 2
    names = [n for n in (args.only or SUITE) if not (args.no_model and n in NEEDS_MODEL)]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(
        filter(None, (str(BENCHMARKS.parent), os.environ.get("PYTHONPATH"))))}  # fmt: skip
    outcomes: list[tuple[str, int, float]] = []
    for name in names:
        command = [sys.executable, str(BENCHMARKS / SCRIPTS[name])]
        command += ["--quick"] if args.quick else []
        command += ["--no-model"] if args.no_model and name not in NEEDS_MODEL else []
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
