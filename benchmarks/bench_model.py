"""Time for the shipped model to write one 8-second loop (tokens → notes) on one core.

    python benchmarks/bench_model.py [--quick] [--loops 300] [--repeats 3] [--model PATH]

An 8-second loop: 120 bpm, 4/4, 4 bars. Each row is a family of states (parts and density);
every loop has a fresh seed and a random mood, mode and tonic. onnxruntime runs on one
thread with spinning off, as in the daemon. Prints a table and writes
benchmarks/results/model.json.

The gate is the p99 over every single run (a loop is as slow as the run the daemon gets):
at most GATE_P99_EVERY_RUN_MS (130 ms) in every row, exit 1 otherwise. The product's target is
80 ms (TARGET_P99_EVERY_RUN_MS), printed beside it as met or not: on this 2-core shared host
the same loop takes 44-75 ms as the host's speed moves over tens of seconds (the thread's CPU
time as slow as the wall: a slower core, or time the VM steals and charges to the thread, which
/proc/stat's steal column shows), so the densest row's every-run p99
lands at 68-103 ms from one run to the next, and a gate at the target would fail on the host,
not on Segue. 130 ms clears the slowest run seen by a quarter; a model made 1.6x slower (a busy
wait of 80 us a token) read 133.5 ms in the host's slow phase and failed (2026-12-02); in its
fast phase only about 2x would. Runs that a stall of the host itself overlapped
(benchmarks/_stallwatch.py: the virtual machine paused) are left out of the gated p99 and
counted beside it; the p99 with them is printed too. Beside it: each loop's best
of `--repeats` passes (the loop's own cost: the same seed writes the same loop, as `timeit`
counts) and the thread's CPU time per run (when wall ≫ CPU, the host took the core away).
--quick (CI): 100 loops per row, one pass.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import StallWatch, breach, header, load_average, write_result  # noqa: E402

from engine.making.model import ModelGenerator  # noqa: E402
from engine.score.music import PARTS, QUADRANTS, Instrument, LoopSpec, Meter  # noqa: E402

PROGRAMS = {"bass": 33, "pad": 48, "lead": 73}
FAMILIES = {
    "lead only, medium": (("lead",), "medium"),
    "pad+lead, medium": (("pad", "lead"), "medium"),
    "bass+pad+lead, high": (("bass", "pad", "lead"), "high"),
    "all four, low": (PARTS, "low"),
    "all four, medium": (PARTS, "medium"),
    "all four, high": (PARTS, "high"),
}
GATE_P99_EVERY_RUN_MS = 130.0  # every row, every run counted: exit 1 above
TARGET_P99_EVERY_RUN_MS = 80.0  # the product's target (issue: densest loop), reported


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 loops per row, one pass (CI)")
    parser.add_argument("--loops", type=int, help="loops per row (default 300, quick 100)")
    parser.add_argument("--repeats", type=int, help="passes (default 3, quick 1)")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument(
        "--no-model", action="store_true", help="(ignored: this measures the model)"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    loops = args.loops or (100 if args.quick else 300)
    repeats = args.repeats or (1 if args.quick else 3)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as in the daemon
    generator = ModelGenerator.load(args.model)  # no fallback here: a missing model is an error
    result = header("model", {"quick": args.quick, "loops": loops, "repeats": repeats,
                              "model": generator.path.name,
                              "gate_p99_every_run_ms": GATE_P99_EVERY_RUN_MS,
                              "target_p99_every_run_ms": TARGET_P99_EVERY_RUN_MS})  # fmt: skip
    rng = np.random.default_rng(7)
    rows = {}
    watch = StallWatch(Path(tempfile.mkstemp(prefix="segue-stalls-", suffix=".jsonl")[1])).start()
    generator.generate(spec_for(PARTS, "medium", rng, -1))  # warm-up
    for name, (parts, density) in FAMILIES.items():
        specs = [spec_for(parts, density, rng, i) for i in range(loops)]
        runs_ms = np.zeros((repeats, len(specs)))
        cpu_ms = np.zeros((repeats, len(specs)))
        spans = np.zeros((repeats, len(specs), 2))  # CLOCK_MONOTONIC start and end of each run
        notes = []
        for r in tqdm(range(repeats), desc=name, unit="pass", leave=False, disable=None):
            for i, spec in enumerate(specs):
                start, cpu = time.perf_counter(), time.thread_time()
                spans[r, i, 0] = time.monotonic()
                loop = generator.generate(spec)
                spans[r, i, 1] = time.monotonic()
                runs_ms[r, i] = (time.perf_counter() - start) * 1e3
                cpu_ms[r, i] = (time.thread_time() - cpu) * 1e3
                if r == 0:
                    notes.append(len(loop.notes))
        best_ms = runs_ms.min(axis=0)
        windows = watch.windows()
        hit = np.array([[any(a <= end and b >= start for a, b in windows) for start, end in row]
                        for row in spans])  # fmt: skip
        own = runs_ms[~hit] if (~hit).any() else runs_ms.ravel()
        rows[name] = {
            "p99_own_runs_ms": round(float(np.percentile(own, 99)), 2),
            "runs_in_host_stalls": int(hit.sum()),
            "p50_every_run_ms": round(float(np.percentile(runs_ms, 50)), 2),
            "p99_every_run_ms": round(float(np.percentile(runs_ms, 99)), 2),
            "max_every_run_ms": round(float(np.max(runs_ms)), 2),
            "p99_cpu_ms": round(float(np.percentile(cpu_ms, 99)), 2),
            "p50_best_ms": round(float(np.percentile(best_ms, 50)), 2),
            "p99_best_ms": round(float(np.percentile(best_ms, 99)), 2),
            "notes_mean": round(float(np.mean(notes)), 1),
        }
    watch.stop()
    watch.path.unlink(missing_ok=True)
    worst = max(r["p99_own_runs_ms"] for r in rows.values())
    print(f"{'8-second loop (120 bpm, 4/4, 4 bars)':38s} {'p50':>7s} {'p99':>7s} {'p99 own':>8s} "
          f"{'max':>7s} {'p99 CPU':>8s} {'best-of p99':>12s} {'notes':>6s} {'host':>5s}"
          "   (ms, every run)")  # fmt: skip
    for name, r in rows.items():
        print(f"{name:38s} {r['p50_every_run_ms']:7.1f} {r['p99_every_run_ms']:7.1f} "
              f"{r['p99_own_runs_ms']:8.1f} {r['max_every_run_ms']:7.1f} {r['p99_cpu_ms']:8.1f} "
              f"{r['p99_best_ms']:12.1f} {r['notes_mean']:6.1f} "
              f"{r['runs_in_host_stalls']:5d}")  # fmt: skip
    failures = []
    if worst > GATE_P99_EVERY_RUN_MS:
        failures.append(breach(f"model p99 every run {worst:.1f} ms > "
                               f"{GATE_P99_EVERY_RUN_MS:.0f} ms (runs inside the host's own "
                               "stalls left out)"))  # fmt: skip
    print(
        "p99 own: every run but those a stall of the host itself overlapped (host: how many; "
        "benchmarks/_stallwatch.py)"
    )
    target = "met" if worst <= TARGET_P99_EVERY_RUN_MS else "NOT MET"
    print(f"worst p99 every run {worst:.1f} ms: target {TARGET_P99_EVERY_RUN_MS:.0f} ms {target}; "
          f"gate {GATE_P99_EVERY_RUN_MS:.0f} ms {'FAIL' if failures else 'PASS'}; load "
          f"{result['machine']['load_average']} → {load_average()}")  # fmt: skip
    result |= {"rows": rows, "worst_p99_every_run_ms": worst,
               "target_met": worst <= TARGET_P99_EVERY_RUN_MS, "load_average_end": load_average(),
               "failures": failures, "passed": not failures}  # fmt: skip
    print(f"wrote {write_result('model', result, args.out)}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
