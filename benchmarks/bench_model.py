"""Time for the shipped model to write one 8-second loop (tokens → notes) on one core.

    python benchmarks/bench_model.py [--loops 300] [--repeats 3] [--model PATH]

An 8-second loop: 120 bpm, 4/4, 4 bars. Each row is a family of states (parts and density);
every loop has a fresh seed and a random mood, mode and tonic. onnxruntime runs on one
thread with spinning off, as in the daemon. Prints a table and writes
benchmarks/results/model.json. Target: p99 < 50 ms in every row; exit status 1 if missed.

Each loop is written `--repeats` times (the same seed writes the same loop), in passes over
the whole row, and counts with its fastest time, as `timeit` does: on a shared virtual
machine the same loop's time varies up to 2x with the host's load, and the best of a few
passes keeps the loop's own cost (its token count) while dropping the host's stalls. The
p99 over every single run, host stalls included, is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engine.generator import ModelGenerator
from engine.music import PARTS, QUADRANTS, Instrument, LoopSpec, Meter

RESULTS = Path(__file__).resolve().parent / "results" / "model.json"
PROGRAMS = {"bass": 33, "pad": 48, "lead": 73}
FAMILIES = {
    "lead only, medium": (("lead",), "medium"),
    "pad+lead, medium": (("pad", "lead"), "medium"),
    "bass+pad+lead, high": (("bass", "pad", "lead"), "high"),
    "all four, low": (PARTS, "low"),
    "all four, medium": (PARTS, "medium"),
    "all four, high": (PARTS, "high"),
}
TARGET_P99_MS = 50.0


def spec_for(parts: tuple[str, ...], density: str, rng: np.random.Generator, i: int) -> LoopSpec:
    mood = list(QUADRANTS.values())[int(rng.integers(0, 4))]
    return LoopSpec(
        state=f"bench{i}",
        mood=mood,
        mode=("major", "minor")[int(rng.integers(0, 2))],
        tonic=int(rng.integers(0, 12)),
        tempo_bpm=120.0,
        meter=Meter(4, 4),
        bars=4,
        instruments=tuple(
            (p, Instrument("standard", 0, True) if p == "drums" else Instrument(p, PROGRAMS[p]))
            for p in parts
        ),
        density=density,
        seed=int(rng.integers(0, 2**31)),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loops", type=int, default=300, help="loops per row")
    parser.add_argument("--repeats", type=int, default=3, help="passes; each loop's best counts")
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as in the daemon
    generator = ModelGenerator.load(args.model)
    rng = np.random.default_rng(7)
    rows = {}
    generator.generate(spec_for(PARTS, "medium", rng, -1))  # warm-up
    for name, (parts, density) in FAMILIES.items():
        specs = [spec_for(parts, density, rng, i) for i in range(args.loops)]
        runs_ms = np.zeros((args.repeats, len(specs)))
        notes = []
        for r in tqdm(range(args.repeats), desc=name, unit="pass", leave=False):
            for i, spec in enumerate(specs):
                start = time.perf_counter()
                loop = generator.generate(spec)
                runs_ms[r, i] = (time.perf_counter() - start) * 1e3
                if r == 0:
                    notes.append(len(loop.notes))
        times_ms = runs_ms.min(axis=0)
        rows[name] = {
            "loops": args.loops,
            "repeats": args.repeats,
            "p50_ms": float(np.percentile(times_ms, 50)),
            "p99_ms": float(np.percentile(times_ms, 99)),
            "max_ms": float(np.max(times_ms)),
            "p99_every_run_ms": float(np.percentile(runs_ms, 99)),
            "notes_mean": float(np.mean(notes)),
        }
    all_p99 = max(r["p99_ms"] for r in rows.values())
    title = "8-second loop (120 bpm, 4/4, 4 bars)"
    print(
        f"{title:38s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'notes':>7s}"
        f" {'p99 every run':>14s}"
    )
    for name, r in rows.items():
        print(
            f"{name:38s} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['max_ms']:8.1f} "
            f"{r['notes_mean']:7.1f} {r['p99_every_run_ms']:14.1f}"
        )
    verdict = "PASS" if all_p99 < TARGET_P99_MS else "FAIL"
    print(f"worst p99 {all_p99:.1f} ms (target < {TARGET_P99_MS:.0f} ms): {verdict}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "model: one 8-second loop, tokens → notes, one core",
                "model": generator.path.name,
                "rows": rows,
                "worst_p99_ms": all_p99,
                "target_p99_ms": TARGET_P99_MS,
                "pass": all_p99 < TARGET_P99_MS,
                "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
                f"python {platform.python_version()}",
                "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
    )
    return 0 if all_p99 < TARGET_P99_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
