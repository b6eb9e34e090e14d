"""Time to write and render one loop, on one core; and what it does to a live stream.

    python benchmarks/generation.py [--quick] [--loops N] [--no-model]

Each loop is what a state of statemachines/game.yaml asks for (8-second loops, 3–4 parts):
the generator writes the notes (the ONNX model when it loads, else the rule-based
generator: the result says which), the SoundFont synth renders the stems. This process is
pinned to one CPU core, with OMP/ONNX Runtime on one thread.

Phase 1 runs alone. Phase 2 runs the same work while a daemon (`segue run --device jack`,
a second process) streams on a JACK dummy server, and reports that stream's underruns,
late polls and block durations over the run.

Writes benchmarks/results/generation.json. No time budget of its own: the stream's
underruns (the daemon's count and the gaps in a capture of what the device played) are
reported with the load; callback.py holds the budget for the stream while the daemon itself
generates. Exits 1 when the model was asked for and a loop (here or in the daemon) came from
the rule-based fallback: the figures would be the fallback's.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/onnxruntime start thread pools
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    REPO,
    BenchError,
    Capture,
    Daemon,
    Jack,
    blocks,
    breach,
    generator_breaches,
    header,
    late_polls,
    load_average,
    summary,
    table,
    write_result,
)

from engine.making.soundfont import find_soundfont  # noqa: E402
from engine.making.workshop import Workshop  # noqa: E402
from engine.score.graph import loop_spec  # noqa: E402
from engine.score.load import load_graph  # noqa: E402

GRAPH = REPO / "statemachines" / "game.yaml"


def pin_one_core() -> int | None:
    """Run on the last core only (the other is left to the audio stream)."""
    try:
        core = max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return core
    except (AttributeError, OSError):
        return None


def make_loops(workshop: Workshop, count: int, seed: int, progress: str) -> list[dict]:
    from tqdm import tqdm

    graph = load_graph(GRAPH)
    states = sorted(graph.states)
    rows = []
    for i in tqdm(range(count), desc=progress, leave=False, file=sys.stderr, disable=None):
        state = states[i % len(states)]
        spec = loop_spec(graph, state, seed * 100_003 + i)
        t0 = time.perf_counter()
        made = workshop.make(spec, f"{state}-{i}")
        total = time.perf_counter() - t0
        tokens = None
        if workshop.model is not None and not made.fallback_reason:
            tokens = len(workshop.model.tokens(spec))  # untimed: the same seed, the same tokens
        rows.append({
            "state": state, "generator": made.clip.loop.generator,
            "notes": len(made.clip.loop.notes), "tokens": tokens,
            "audio_seconds": round(made.clip.frames / 48000, 3),
            "generate_ms": round(made.seconds_generate * 1000, 3),
            "render_ms": round(made.seconds_render * 1000, 3),
            "total_ms": round(total * 1000, 3), "fallback": made.fallback_reason or None,
        })  # fmt: skip
    return rows


def figures(rows: list[dict]) -> dict:
    totals = [r["total_ms"] for r in rows]
    pct = (50, 99)
    return {
        "loops": len(rows),
        "generators": sorted({r["generator"] for r in rows}),
        "generate_ms": summary([r["generate_ms"] for r in rows], pct),
        "render_ms": summary([r["render_ms"] for r in rows], pct),
        "total_ms": summary(totals, pct),
        "notes": summary([r["notes"] for r in rows], pct),
        "tokens": summary([r["tokens"] for r in rows], pct),
        "audio_seconds": summary([r["audio_seconds"] for r in rows], pct),
        "loops_per_second": round(1000 * len(totals) / sum(totals), 2) if totals else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 loops per phase (CI)")
    parser.add_argument("--loops", type=int, help="loops per phase (default 200, quick 30)")
    parser.add_argument("--no-model", action="store_true", help="the rule-based generator")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    count = args.loops or (30 if args.quick else 200)
    core = pin_one_core()
    settings = {"quick": args.quick, "loops": count, "graph": GRAPH.name, "seed": args.seed,
                "use_model": not args.no_model, "pinned_core": core,
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "onnxruntime_threads": 1}  # fmt: skip
    result = header("generation", settings)
    workshop = Workshop(find_soundfont(None), use_model=not args.no_model)
    result["generator"] = workshop.generator_name
    result["model_problem"] = workshop.model_problem or None
    if workshop.model_problem and not args.no_model:
        print(f"generation: no model loops ({workshop.model_problem}); measuring the rule-based "
              "generator", file=sys.stderr)  # fmt: skip
    make_loops(workshop, 5, args.seed + 1, "warm-up")  # SoundFont presets load on first use

    alone = make_loops(workshop, count, args.seed, "alone")
    result["alone"] = figures(alone)
    try:
        with Jack(256) as jack, Daemon(jack, GRAPH, use_model=not args.no_model) as daemon:
            before = daemon.client.status()
            capture = Capture(jack, daemon.folder / "played.wav").start()
            with_stream = make_loops(workshop, count, args.seed + 2, "beside a stream")
            after = daemon.client.status()
            played = capture.stop()
        daemon.cleanup()
    except BenchError as exc:
        print(f"generation: {exc}", file=sys.stderr)
        return 2
    stream = {
        "underruns": after["sink"]["underruns"] - before["sink"]["underruns"],
        "capture_gaps": played["gaps"],
        "capture_gap_frames": played["gap_frames"],
        "ring_empty_seen": late_polls(after["sink"]),
        "blocks": blocks(after["sink"]) - blocks(before["sink"]),
        "callback_ms_since_start": after["sink"].get("callback_ms"),
        "block_ms": after["sink"].get("block_ms"),
        "daemon_generator": after.get("generator"),
    }  # fmt: skip
    result["with_stream"] = figures(with_stream) | {"stream": stream}
    result["load_average_end"] = load_average()
    result["rows"] = {"alone": alone, "with_stream": with_stream}

    rows = []
    for label, fig in (("alone", result["alone"]), ("beside a stream", result["with_stream"])):
        for metric in ("generate_ms", "render_ms", "total_ms"):
            s = fig[metric]
            rows.append([label, metric[:-3], s["p50"], s["p99"], s["max"]])
        rows.append([label, "loops/s", fig["loops_per_second"], None, None])
    print(table(rows, ["phase", "ms per loop", "p50", "p99", "max"]))
    notes, tokens = result["alone"]["notes"], result["alone"]["tokens"]
    print(f"\ngenerator: {workshop.generator_name}"
          f"{' (' + workshop.model_problem + ')' if workshop.model_problem else ''}; "
          f"notes/loop p50 {notes.get('p50')}; tokens/loop p50 {tokens.get('p50', '-')}; "
          f"stream during phase 2: {stream['underruns']} underruns, {stream['capture_gaps']} "
          f"gaps played, {stream['ring_empty_seen']} "
          f"empty-ring polls, {stream['blocks']} blocks; load "
          f"{result['machine']['load_average']} → {result['load_average_end']}")  # fmt: skip
    if stream["underruns"] > 0:  # reported, with the load; callback.py holds the budget
        print(f"note: {stream['underruns']} underrun(s) in the stream while generating (load "
              f"average now {', '.join(map(str, load_average()))})", file=sys.stderr)  # fmt: skip
    failures = generator_breaches(after, not args.no_model)
    fallbacks = [r for r in alone + with_stream if r["generator"] != "model"]
    if not args.no_model and (workshop.model is None or fallbacks):
        failures.append(
            breach(
                f"{len(fallbacks)} of {len(alone + with_stream)} loops from the "
                f"rule-based generator ({workshop.model_problem or 'fallback'})"
            )
        )
    result["failures"] = failures
    result["passed"] = not failures
    print(f"wrote {write_result('generation', result, args.out)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
