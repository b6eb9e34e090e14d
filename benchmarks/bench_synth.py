"""Synth speed and quality: TinySoundFont (what Segue uses) against FluidSynth.

Renders 8-second, 4-part loops from the rule generator at 48 kHz and prints a
table; writes benchmarks/results/synth.json. FluidSynth is measured only when
pyfluidsynth is installed (`pip install pyfluidsynth`, needs libfluidsynth3).

    python benchmarks/bench_synth.py [--loops 30] [--soundfont PATH]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import threading
import time
from pathlib import Path

import numpy as np
import pyloudnorm
import tinysoundfont

from engine.gm import instrument
from engine.music import MOODS, SAMPLE_RATE, LoopSpec, Meter
from engine.rules import RuleGenerator
from engine.soundfont import find_soundfont
from engine.synth import CHANNELS, Synth, _events

RESULTS = Path(__file__).parent / "results" / "synth.json"
INSTRUMENTS = (
    ("drums", "standard"),
    ("bass", "electric_bass"),
    ("pad", "strings"),
    ("lead", "flute"),
)


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


class Fluid:
    """Minimal per-part FluidSynth renderer with the same event handling as engine.synth."""

    def __init__(self, path: Path) -> None:
        import fluidsynth

        self._fs = fluidsynth.Synth(gain=0.5, samplerate=float(SAMPLE_RATE))
        self._fs.setting("synth.reverb.active", 0)
        self._fs.setting("synth.chorus.active", 0)
        self._sfid = self._fs.sfload(str(path))
        write = fluidsynth._fl.fluid_synth_write_float
        write.argtypes = [ctypes.c_void_p, ctypes.c_int] + [ctypes.c_void_p, ctypes.c_int] * 0 + [
            ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int
        ]  # fmt: skip
        self._write = write

    def generate(self, out: np.ndarray) -> None:
        pointer = out.ctypes.data
        self._write(self._fs.synth, out.shape[0], pointer, 0, 2, pointer, 1, 2)

    def render_stems(self, loop) -> np.ndarray:
        frames = loop.spec.frames
        fpb = SAMPLE_RATE * 60.0 / loop.spec.tempo_bpm
        stems = np.zeros((len(loop.spec.parts), frames, 2), np.float32)
        for index, (part, inst) in enumerate(loop.spec.instruments):
            channel = CHANNELS[part]
            self._fs.program_select(channel, self._sfid, 128 if inst.is_drums else 0, inst.program)
            events = _events([n for n in loop.notes if n.part == part], fpb)
            end = max(frames, events[-1][0]) + 2 * SAMPLE_RATE
            buffer = np.zeros((end, 2), np.float32)
            position = 0
            for frame, is_on, key, vel in events:
                if frame > position:
                    self.generate(buffer[position:frame])
                    position = frame
                if is_on:
                    self._fs.noteon(channel, key, vel)
                else:
                    self._fs.noteoff(channel, key)
            self.generate(buffer[position:])
            self._fs.all_sounds_off(channel)
            for start in range(0, end, frames):
                chunk = buffer[start : start + frames]
                stems[index, : chunk.shape[0]] += chunk
        return stems


def tsf_one_note(
    synth: tinysoundfont.Synth, sfid: int, program: int, key: int, vel: int
) -> np.ndarray:
    synth.program_select(0, sfid, 0, program)
    synth.noteon(0, key, vel)
    out = np.zeros((SAMPLE_RATE, 2), np.float32)
    synth.generate_simple(SAMPLE_RATE // 2, buffer=memoryview(out[: SAMPLE_RATE // 2]).cast("B"))
    synth.noteoff(0, key)
    synth.generate_simple(SAMPLE_RATE // 2, buffer=memoryview(out[SAMPLE_RATE // 2 :]).cast("B"))
    synth.sounds_off(0)
    return out


def fluid_one_note(fluid: Fluid, program: int, key: int, vel: int) -> np.ndarray:
    fluid._fs.program_select(0, fluid._sfid, 0, program)
    out = np.zeros((SAMPLE_RATE, 2), np.float32)
    fluid._fs.noteon(0, key, vel)
    fluid.generate(out[: SAMPLE_RATE // 2])
    fluid._fs.noteoff(0, key)
    fluid.generate(out[SAMPLE_RATE // 2 :])
    fluid._fs.all_sounds_off(0)
    return out


def inharmonic_db(signal: np.ndarray, key: int) -> float:
    """Energy away from the harmonics of the note, relative to all energy (aliasing, noise)."""
    mono = signal[: SAMPLE_RATE // 2].mean(axis=1) * np.hanning(SAMPLE_RATE // 2)
    spectrum = np.abs(np.fft.rfft(mono)) ** 2
    freqs = np.fft.rfftfreq(mono.shape[0], 1 / SAMPLE_RATE)
    f0 = 440.0 * 2 ** ((key - 69) / 12)
    harmonic_index = np.round(freqs / f0)
    near = (harmonic_index >= 1) & (np.abs(freqs - harmonic_index * f0) < max(15.0, 0.02 * f0))
    near |= freqs < 20
    return float(10 * np.log10(spectrum[~near].sum() / spectrum.sum() + 1e-20))


def gil_gaps(work) -> dict:
    """Run `work` in a thread; report the main thread's longest wait and its throughput."""

    def spin(seconds: float) -> int:
        count, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            count += 1
        return count

    baseline = spin(0.3) / 0.3
    thread = threading.Thread(target=work)
    start = last = time.perf_counter()
    thread.start()
    count, longest = 0, 0.0
    while thread.is_alive():
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
        count += 1
    elapsed = time.perf_counter() - start
    return {"max_gap_ms": longest * 1e3, "main_thread_share": count / elapsed / baseline}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=30)
    parser.add_argument("--soundfont", default=None)
    args = parser.parse_args()
    path = find_soundfont(args.soundfont)
    batch = loops(args.loops)
    results: dict = {"soundfont": str(path), "loops": args.loops, "seconds_per_loop": 8.0}
    generator, times = RuleGenerator(), []
    for loop in batch:
        start = time.perf_counter()
        generator.generate(loop.spec)
        times.append((time.perf_counter() - start) * 1e3)
    results["rules"] = {"generate_p50_ms": pct(times, 50), "generate_p99_ms": pct(times, 99)}
    meter = pyloudnorm.Meter(SAMPLE_RATE)

    start = time.perf_counter()
    synth = Synth(path)
    tsf = {"load_s": time.perf_counter() - start}
    synth.render(batch[0])  # warm caches
    times, limited = [], 0
    for loop in batch:
        start = time.perf_counter()
        clip = synth.render(loop)
        times.append((time.perf_counter() - start) * 1e3)
        limited += clip.peak > 0.7
    tsf |= {"render_p50_ms": pct(times, 50), "render_p99_ms": pct(times, 99)}
    tsf["loudness_lufs"] = [synth.render(loop).loudness_lufs for loop in batch[:5]]

    raw = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    sfid = raw.sfload(str(path))
    raw.program_select(0, sfid, 0, 48)
    for key in (48, 52, 55, 60, 64, 67, 72):
        raw.noteon(0, key, 100)
    big = np.zeros((8 * SAMPLE_RATE, 2), np.float32)
    tsf["gil_one_8s_call"] = gil_gaps(
        lambda: [raw.generate_simple(big.shape[0], memoryview(big).cast("B")) for _ in range(5)]
    )
    tsf["gil_chunked_render"] = gil_gaps(lambda: [synth.render(loop) for loop in batch[:5]])
    # Control: any pure-Python worker thread costs the main thread this much.
    tsf["gil_pure_python"] = gil_gaps(lambda: sum(i * i for i in range(3_000_000)))
    tsf["one_note_lufs"], tsf["inharmonic_db"] = quality(
        lambda p, k, v: tsf_one_note(raw, sfid, p, k, v), meter
    )
    results["tinysoundfont"] = tsf

    try:
        import fluidsynth  # noqa: F401
    except ImportError:
        fluid = None
    else:
        start = time.perf_counter()
        fluid = Fluid(path)
        fl = {"load_s": time.perf_counter() - start}
        fluid.render_stems(batch[0])
        times = []
        for loop in batch:
            start = time.perf_counter()
            stems = fluid.render_stems(loop)
            meter.integrated_loudness(stems.sum(axis=0).astype(np.float64))  # same post-work
            times.append((time.perf_counter() - start) * 1e3)
        fl |= {"render_p50_ms": pct(times, 50), "render_p99_ms": pct(times, 99)}
        fl["gil_render"] = gil_gaps(lambda: [fluid.render_stems(loop) for loop in batch[:5]])
        fl["one_note_lufs"], fl["inharmonic_db"] = quality(
            lambda p, k, v: fluid_one_note(fluid, p, k, v), meter
        )
        results["fluidsynth"] = fl

    print(f"SoundFont: {path}  ({args.loops} loops of 8 s, 4 parts, 48 kHz, 1 thread)")
    print(f"{'':28}{'tinysoundfont':>16}{'fluidsynth':>16}")
    rows = [
        ("load (s)", "load_s", "{:.2f}"),
        ("render p50 (ms)", "render_p50_ms", "{:.0f}"),
        ("render p99 (ms)", "render_p99_ms", "{:.0f}"),
    ]
    for label, key, fmt in rows:
        cells = [
            fmt.format(results[name][key]) if name in results else "-"
            for name in ("tinysoundfont", "fluidsynth")
        ]
        print(f"{label:28}{cells[0]:>16}{cells[1]:>16}")
    for name in ("tinysoundfont", "fluidsynth"):
        if name not in results:
            continue
        r = results[name]
        lufs = np.array(list(r["one_note_lufs"].values()))
        print(f"{name}: one-note loudness over programs: spread {lufs.max() - lufs.min():.1f} LU, "
              f"std {lufs.std():.1f} LU; inharmonic energy (dB) {r['inharmonic_db']}")  # fmt: skip
        for key in ("gil_one_8s_call", "gil_chunked_render", "gil_pure_python", "gil_render"):
            if key in r:
                g = r[key]
                print(f"  {key}: main thread max gap {g['max_gap_ms']:.1f} ms, "
                      f"share {g['main_thread_share']:.0%}")  # fmt: skip
    rules = results["rules"]
    print(
        f"rules generator: p50 {rules['generate_p50_ms']:.1f} ms, "
        f"p99 {rules['generate_p99_ms']:.1f} ms"
    )
    print(f"clips whose raw peak at {-18} LUFS exceeded 0.7: {limited}/{len(batch)}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=float))
    print(f"wrote {RESULTS}")


PROGRAMS = {"piano": 0, "organ": 16, "guitar": 24, "bass": 33, "strings": 48, "trumpet": 56,
            "sax": 65, "flute": 73, "square": 80, "saw": 81, "pad": 89}  # fmt: skip


def quality(one_note, meter) -> tuple[dict, dict]:
    loudness = {}
    for name, program in PROGRAMS.items():
        key = 40 if name == "bass" else 60
        loudness[name] = float(
            meter.integrated_loudness(one_note(program, key, 100).astype(np.float64))
        )
    aliasing = {}
    for name, program, key in (("square C7", 80, 96), ("saw C7", 81, 96), ("flute C7", 73, 96)):
        aliasing[name] = round(inharmonic_db(one_note(program, key, 100), key), 1)
    return loudness, aliasing


if __name__ == "__main__":
    main()
