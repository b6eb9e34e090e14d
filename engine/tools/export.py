"""`segue export`: a clip pool, for engines that can only play files.

    segue export --graph statemachines/game.yaml --per-state 4 --out pool/ [--stems] [--seed 0]

Renders `--per-state` loops for every state with the daemon's own machinery (the same
`Workshop`, the same per-loop seeds as `LoopPool`, so loop `idle-2` of an export is the third
loop the daemon would play in `idle` for that seed), and every stinger in every state's key:

    pool/manifest.json             what each file is: state, kind, tempo, meter, key, loudness...
    pool/<state>/<state>-<n>.wav   the loop, 24-bit PCM, loop points in a `smpl` chunk
    pool/<state>/<state>-<n>.<part>.wav   with --stems: one file per part, same loop points
    pool/<state>/<state>-<n>.mid   the notes: one track per part, GM programs, drums on ch. 10
    pool/<state>/stinger-<name>-<state>.wav / .mid   a stinger in the state's key (one-shot)

Why 24-bit PCM: it is the one WAV encoding that FMOD, Wwise and Unity all import natively.
Wwise imports 16- and 24-bit PCM and converts 32-bit float down to 24 bits at most; Unity and
FMOD read all of them. Segue's clips peak at -1 dBFS, so 24 bits (a -144 dBFS step) lose
nothing audible. soundfile cannot write `smpl`, so the WAV is written here with the stdlib.

Loop points follow the RIFF `smpl` chunk: one forward loop, start 0 and end frames - 1,
in sample frames, the end sample inclusive ("this sample will also be played"). FMOD and
Wwise read it; Unity ignores it and loops the whole clip, which is the same loop.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.making.workshop import loop_seed
from engine.score.graph import Graph, GraphError, State, loop_spec
from engine.score.load import load_graph
from engine.score.music import PITCH_NAMES, SAMPLE_RATE, Clip, stem_scale, transposition
from engine.tools.midi import loop_midi

log = logging.getLogger("segue.export")

FORMAT = "segue-clip-pool"
FORMAT_VERSION = 1
PCM_BITS = 24
PCM_FULL_SCALE = 1 << (PCM_BITS - 1)  # float 1.0 = 2^23, as libsndfile reads it back
MIDI_UNITY_NOTE = 60  # smpl: the clip plays at its recorded pitch


def loop_id(state: str, number: int) -> str:
    return f"{state}-{number}"


# -- WAV with a smpl chunk ---------------------------------------------------------------


def _chunk(tag: bytes, body: bytes) -> bytes:
    pad = b"\0" if len(body) % 2 else b""  # RIFF chunks are word aligned
    return tag + struct.pack("<I", len(body)) + body + pad


def smpl_chunk(loop_start_frames: int, loop_end_frames: int, sample_rate: int) -> bytes:
    """A RIFF `smpl` chunk with one forward, endless loop; the end frame is played."""
    header = struct.pack(
        "<9I",
        0,  # manufacturer: none
        0,  # product
        round(1e9 / sample_rate),  # sample period, ns
        MIDI_UNITY_NOTE,
        0,  # pitch fraction
        0,  # SMPTE format: none
        0,  # SMPTE offset
        1,  # sample loops
        0,  # sampler data bytes
    )
    loop = struct.pack("<6I", 0, 0, loop_start_frames, loop_end_frames, 0, 0)  # id, forward,
    return _chunk(b"smpl", header + loop)  # start, end (inclusive), fraction, play count 0 = ∞


def write_wav(
    path: Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, looped: bool = True
) -> int:
    """Write (frames, channels) float audio as 24-bit PCM WAV; returns the samples clipped.

    With `looped`, a `smpl` chunk after the data marks the whole file as the loop.
    """
    frames, channels = audio.shape
    scaled = np.round(np.asarray(audio, dtype=np.float64) * PCM_FULL_SCALE)
    clipped = int(np.count_nonzero((scaled < -PCM_FULL_SCALE) | (scaled > PCM_FULL_SCALE - 1)))
    pcm = np.clip(scaled, -PCM_FULL_SCALE, PCM_FULL_SCALE - 1).astype("<i4")
    data = pcm.reshape(-1).view(np.uint8).reshape(-1, 4)[:, :3].tobytes()  # low 3 bytes, LE
    block_align = channels * PCM_BITS // 8
    fmt = struct.pack(
        "<HHIIHH", 1, channels, sample_rate, sample_rate * block_align, block_align, PCM_BITS
    )
    chunks = _chunk(b"fmt ", fmt) + _chunk(b"data", data)
    if looped:
        chunks += smpl_chunk(0, max(0, frames - 1), sample_rate)
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    return clipped


# -- stingers -----------------------------------------------------------------------------


def stinger_shift(tonic: int) -> int:
    """Semitones that move a stinger written in C to `tonic`: the smaller step (-5..+6),
    as `Workshop.make_stinger` moves it for the daemon."""
    return transposition(tonic)


def stinger_id(name: str, state: str) -> str:
    """The daemon's id for the stinger `name` in `state` (engine/control/conductor.py)."""
    return f"stinger-{name}-{state}"


# -- the export ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    state: str
    kind: str  # "loop" | "stinger"
    number: int = 0  # loop number within the state
    stinger: str = ""


def plan_jobs(graph: Graph, per_state: int) -> list[Job]:
    jobs = [Job(state, "loop", number) for state in graph.states for number in range(per_state)]
    jobs += [
        Job(state, "stinger", stinger=name) for state in graph.states for name in graph.stingers
    ]
    return jobs


def _key(tonic: int, mode: str) -> dict:
    return {"tonic": PITCH_NAMES[tonic], "mode": mode, "name": f"{PITCH_NAMES[tonic]} {mode}"}


def _write_clip(out_dir: Path, rel_base: str, audio: np.ndarray, looped: bool) -> tuple[str, int]:
    rel = f"{rel_base}.wav"
    clipped = write_wav(out_dir / rel, audio, SAMPLE_RATE, looped=looped)
    if clipped:
        log.warning("%s: %d samples clipped at full scale", rel, clipped)
    return rel, clipped


def _loudness_entry(clip: Clip, audio: np.ndarray) -> dict:
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return {
        "loudness_lufs": round(float(clip.loudness_lufs), 2),
        "peak": round(peak, 6),
        "peak_dbfs": round(20 * math.log10(peak), 2) if peak > 0 else None,
    }


def export_pool(
    graph: Graph,
    out_dir: Path,
    workshop,
    *,
    per_state: int,
    seed: int = 0,
    stems: bool = False,
    progress: bool = True,
) -> dict:
    """Render and write the pool; returns the manifest (also written to manifest.json)."""
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    for state in graph.states:
        (out_dir / state).mkdir(exist_ok=True)
    clips: list[dict] = []
    fallbacks = 0
    jobs = plan_jobs(graph, per_state)
    for job in tqdm(jobs, desc="export", unit="clip", disable=not progress, leave=False):
        state = graph.states[job.state]
        entry: dict = {"state": job.state, "kind": job.kind}
        if job.kind == "loop":
            number_seed = loop_seed(seed, job.state, job.number)
            made = workshop.make(
                loop_spec(graph, job.state, number_seed), loop_id(job.state, job.number)
            )
            if made.fallback_reason:
                fallbacks += 1
                log.warning(
                    "%s: %s; the rule-based generator wrote it",
                    made.clip.loop.loop_id,
                    made.fallback_reason,
                )
            clip = made.clip
            audio = clip.mix
            base = f"{job.state}/{clip.loop.loop_id}"
            entry |= {"id": clip.loop.loop_id, "number": job.number, "seed": number_seed}
        else:
            stinger = graph.stingers[job.stinger]
            # The daemon's own rendering: the same notes, key, bars and tail as it plays.
            made = workshop.make_stinger(
                stinger, loop_spec(graph, job.state, 0), stinger_id(job.stinger, job.state)
            )
            clip = made.clip
            audio = clip.mix
            base = f"{job.state}/{clip.loop.loop_id}"
            entry |= {
                "id": clip.loop.loop_id,
                "stinger": job.stinger,
                "instrument": stinger.instrument.name,
                "quantize": stinger.quantize,
                "cooldown_seconds": stinger.cooldown_seconds,
                "gain_db": stinger.gain_db,
                "transpose_semitones": stinger_shift(state.tonic),
            }
        spec = clip.loop.spec
        looped = job.kind == "loop"
        wav, clipped = _write_clip(out_dir, base, audio, looped)
        frames = int(audio.shape[0])
        entry |= {
            "tempo_bpm": spec.tempo_bpm,
            "meter": str(spec.meter),
            "bars": spec.bars,
            "beats": spec.beats,
            "key": _key(spec.tonic, spec.mode),
            "mood": spec.mood,
            **_loudness_entry(clip, audio),
            "frames": frames,
            "seconds": round(frames / SAMPLE_RATE, 6),
            "loop_start_frames": 0 if looped else None,
            "loop_end_frames": frames - 1 if looped else None,  # inclusive, as in smpl
            "wav": wav,
            "clipped_samples": clipped,
            "stems": {},
            "midi": f"{base}.mid",
            "generator": clip.loop.generator,
            "notes": len(clip.loop.notes),
            "instruments": {
                part: {"name": inst.name, "program": inst.program, "drums": inst.is_drums}
                for part, inst in spec.instruments
            },
        }
        if stems and looped:
            for part, stem in zip(clip.parts, clip.stems, strict=True):
                audio = stem * stem_scale(stem)  # the float samples the daemon plays
                rel, stem_clipped = _write_clip(out_dir, f"{base}.{part}", audio, True)
                entry["stems"][part] = rel
                entry["clipped_samples"] += stem_clipped
        loop_midi(clip.loop).save(str(out_dir / entry["midi"]))
        clips.append(entry)
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "graph": str(graph.path),
        "initial": graph.initial,
        "seed": seed,
        "per_state": per_state,
        "sample_rate": SAMPLE_RATE,
        "channels": 2,
        "wav_encoding": f"pcm_{PCM_BITS}",
        "loop_points": "smpl chunk: one forward loop, sample frames, end inclusive",
        "soundfont": str(getattr(workshop.synth, "soundfont", "")),
        "generator_default": workshop.generator_name,
        "model_fallbacks": fallbacks,
        "states": {name: _state_entry(s) for name, s in graph.states.items()},
        "transitions": [_transition_entry(t) for t in graph.transitions],
        "clips": clips,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _state_entry(state: State) -> dict:
    return {
        "mood": state.mood,
        "key": _key(state.tonic, state.mode),
        "tempo_bpm": state.tempo_bpm,
        "meter": str(state.meter),
        "bars": state.bars,
        "density": state.density,
        "repeats": state.repeats,
        "once": state.once,
        "next": state.next,
        "cues_beats": dict(state.cues),
    }


def _transition_entry(rule) -> dict:
    return {
        "from": rule.source,
        "on": rule.event,
        "to": rule.target,
        "exit": rule.exit,
        "entry": rule.entry,
        "fade_out": str(rule.fade_out),
        "fade_in": str(rule.fade_in),
        "curve": rule.curve,
        "stinger": rule.stinger,
    }


# -- command line -------------------------------------------------------------------------


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="render a clip pool (WAV with loop points, MIDI, manifest) per state"
    )
    parser.add_argument("--graph", required=True, type=Path, help="state graph (YAML)")
    parser.add_argument("--per-state", type=int, default=4, help="loops per state (default 4)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--stems", action="store_true", help="also one WAV per part")
    parser.add_argument("--seed", type=int, default=0, help="the daemon's --seed to match")
    parser.add_argument("--soundfont", help="a .sf2/.sf3 file (default: as segue run)")
    parser.add_argument("--model", help="an ONNX model (default: the one in models/)")
    parser.add_argument("--no-model", action="store_true", help="use the rule-based generator")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.making.soundfont import SoundFontNotFound, find_soundfont
    from engine.making.workshop import Workshop

    try:
        graph = load_graph(args.graph)
    except GraphError as exc:
        log.error("%s", exc)
        return 2
    if args.per_state < 1:
        log.error("--per-state must be at least 1, got %d", args.per_state)
        return 2
    try:
        soundfont = find_soundfont(args.soundfont)
    except SoundFontNotFound as exc:
        log.error("%s", exc)
        return 2
    workshop = Workshop(soundfont, args.model, use_model=not args.no_model)
    if workshop.model_problem and not args.no_model:
        log.warning("no model loops: %s; using the rule-based generator", workshop.model_problem)
    try:
        manifest = export_pool(
            graph, args.out, workshop, per_state=args.per_state, seed=args.seed, stems=args.stems
        )
    except OSError as exc:
        log.error("cannot write to %s: %s", args.out, exc.strerror or exc)
        return 1
    kinds = [c["kind"] for c in manifest["clips"]]
    print(
        f"wrote {kinds.count('loop')} loops and {kinds.count('stinger')} stingers for "
        f"{len(graph.states)} states to {args.out / 'manifest.json'}"
    )
    return 0


__all__ = ["export_pool", "loop_midi", "register", "run", "write_wav"]
