"""Synth speed and memory: Segue's FluidSynth render of one 8-second, four-part loop.

    python benchmarks/bench_synth.py [--loops 40] [--soundfont PATH]

Renders rule-generated 8-second loops (drums, bass, pad, lead; 120 BPM, medium density;
reverb 0.3 and chorus 0.1, the graph defaults) with `engine.making.synth.Synth` on one pinned core,
the whole path: synthesis, the wet bus shared into stems, part balance, compressor, limiter.
Reports the SoundFont's load time, the process's RSS before and after, render time per loop
(CPU time of the rendering thread, and wall time: this machine is shared, and wall time counts
what other processes take), how much of the CPU time FluidSynth itself took (its
`fluid_synth_process` calls) and what the rest of Segue's render took, and the loudness of
each clip. The render writes the stems as the worker stores them (16-bit PCM, the mix their
float32 sum), as `engine.making.workshop` asks it to. Exits 1 when the render's p99 CPU time is over
RENDER_P99_BUDGET_MS. Writes benchmarks/results/synth.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import breach, header, load_average, rss_kb, summary, write_result  # noqa: E402

from engine.making.rules import RuleGenerator  # noqa: E402
from engine.making.soundfont import find_soundfont  # noqa: E402
from engine.score.gm import instrument  # noqa: E402
from engine.score.music import MOODS, LoopSpec, Meter  # noqa: E402

RENDER_P99_BUDGET_MS = 80.0
INSTRUMENTS = (("drums", "standard"), ("bass", "electric_bass"), ("pad", "strings"),
               ("lead", "flute"))  # fmt: skip


def loops(count: int) -> list:
    generator = RuleGenerator()
    instruments = tuple((part, instrument(part, name)) for part, name in INSTRUMENTS)
    moods = list(MOODS)
    specs = [
        LoopSpec("bench", moods[i % len(moods)], ("major", "minor")[i % 2], i % 12, 120.0,
                 Meter(4, 4), 4, instruments, density="medium", seed=i)
        for i in range(count)
    ]  # fmt: skip
    return [generator.generate(spec) for spec in specs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=40)
    parser.add_argument("--soundfont", default=None)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    except (AttributeError, OSError):
        pass
    path = find_soundfont(args.soundfont)
    batch = loops(args.loops + 1)
    settings = {
        "loops": args.loops,
        "soundfont": str(path),
        "seconds_per_loop": 8.0,
        "parts": [p for p, _ in INSTRUMENTS],
        "budget_p99_cpu_ms": RENDER_P99_BUDGET_MS,
    }
    result = header("synth", settings)
    rss_before = rss_kb(os.getpid())
    start = time.perf_counter()
    from engine.making.synth import Synth

    synth = Synth(path)
    load_s = time.perf_counter() - start
    from engine.making.workshop import STORAGE_DTYPE

    synth.render(batch[0])  # the presets' samples are decoded on first use
    in_fluidsynth = [0.0]
    process = synth._process

    def timed_process(*args):
        start = time.thread_time()
        try:
            return process(*args)
        finally:
            in_fluidsynth[0] += time.thread_time() - start

    synth._process = timed_process
    cpu_ms, wall_ms, fluid_ms, lufs = [], [], [], []
    for loop in batch[1:]:
        in_fluidsynth[0] = 0.0
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        clip = synth.render(loop, STORAGE_DTYPE)
        cpu_ms.append((time.thread_time() - cpu0) * 1e3)
        wall_ms.append((time.perf_counter() - wall0) * 1e3)
        fluid_ms.append(in_fluidsynth[0] * 1e3)
        lufs.append(round(clip.loudness_lufs, 2))
    rest_ms = [total - fluid for total, fluid in zip(cpu_ms, fluid_ms, strict=True)]
    figures = {"synth": synth.describe(), "import_and_load_s": round(load_s, 3),
               "rss_before_kb": rss_before, "rss_after_kb": rss_kb(os.getpid()),
               "render_cpu_ms": summary(cpu_ms, (50, 99)),
               "render_wall_ms": summary(wall_ms, (50, 99)),
               "fluidsynth_cpu_ms": summary(fluid_ms, (50, 99)),
               "rest_of_render_cpu_ms": summary(rest_ms, (50, 99)),
               "loudness_lufs": lufs}  # fmt: skip
    failures = []
    p99 = figures["render_cpu_ms"]["p99"]
    if p99 > RENDER_P99_BUDGET_MS:
        failures.append(breach(f"render p99 {p99:.0f} ms CPU > {RENDER_P99_BUDGET_MS:.0f} ms"))
    result |= {"figures": figures, "load_average_end": load_average(), "failures": failures,
               "passed": not failures}  # fmt: skip
    c, w = figures["render_cpu_ms"], figures["render_wall_ms"]
    print(f"{synth.name}, {path.name}: import + load {load_s:.2f} s; RSS "
          f"{rss_before / 1024:.0f} → {figures['rss_after_kb'] / 1024:.0f} MiB")  # fmt: skip
    print(f"one 8-s four-part loop, reverb and chorus on, one core ({args.loops} loops): "
          f"CPU p50 {c['p50']:.0f} / p99 {c['p99']:.0f} ms; wall p50 {w['p50']:.0f} / "
          f"p99 {w['p99']:.0f} ms (budget p99 {RENDER_P99_BUDGET_MS:.0f} ms)")  # fmt: skip
    f, r = figures["fluidsynth_cpu_ms"], figures["rest_of_render_cpu_ms"]
    print(f"  of which FluidSynth p50 {f['p50']:.0f} / p99 {f['p99']:.0f} ms, the rest of the "
          f"render p50 {r['p50']:.0f} / p99 {r['p99']:.0f} ms")  # fmt: skip
    print(f"load {result['machine']['load_average']} → {result['load_average_end']}")
    print(f"wrote {write_result('synth', result, args.out)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
