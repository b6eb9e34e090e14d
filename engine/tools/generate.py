"""`segue generate`: write a state's loops to MIDI (and WAV), with a piano roll of each.

    segue generate --graph statemachines/game.yaml --state combat --count 4 --out out/ [--render]

For a composer who wants to hear or edit what the model writes: each loop becomes
`<state>-<seed>.mid` (one track per part, the state's General MIDI instruments) and
`<state>-<seed>.png`; with --render also `<state>-<seed>.wav` through the SoundFont synth.
If the model cannot be loaded or cannot write a loop, the rule-based generator writes it
and the command says so in one line.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from engine.score.music import PARTS, Loop
from engine.tools.midi import loop_midi

log = logging.getLogger("segue")

PART_COLOURS = {"drums": "#7f7f7f", "bass": "#1f77b4", "pad": "#2ca02c", "lead": "#d62728"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="write a state's generated loops as MIDI, PNG (and WAV)"
    )
    parser.add_argument("--graph", required=True, type=Path, help="state graph (YAML)")
    parser.add_argument("--state", required=True, help="state whose loops to write")
    parser.add_argument("--count", type=int, default=1, help="how many loops")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first loop")
    parser.add_argument("--render", action="store_true", help="also render WAV files")
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: shipped)")
    parser.add_argument("--soundfont", type=Path, default=None, help="SoundFont for --render")
    parser.set_defaults(func=run)


def piano_roll(loop: Loop, path: Path) -> None:
    """A PNG of the loop: time in beats across, pitch up, one colour per part, bar lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = loop.spec
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    for note in loop.notes:
        ax.add_patch(
            plt.Rectangle(
                (note.start_beats, note.pitch - 0.4),
                note.duration_beats,
                0.8,
                color=PART_COLOURS[note.part],
                alpha=0.35 + 0.65 * note.velocity / 127,
                linewidth=0,
            )
        )
    bar_beats = spec.beats / spec.bars
    for bar in range(spec.bars + 1):
        ax.axvline(bar * bar_beats, color="black", linewidth=0.6)
    pitches = [n.pitch for n in loop.notes] or [60]
    ax.set_xlim(0, spec.beats)
    ax.set_ylim(min(pitches) - 2, max(pitches) + 2)
    ax.set_xlabel("beats")
    ax.set_ylabel("MIDI pitch (drums: GM key)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=PART_COLOURS[p]) for p in PARTS if p in spec.parts]
    ax.legend(handles, [p for p in PARTS if p in spec.parts], loc="upper right", fontsize=8)
    ax.set_title(
        f"{spec.state} — {spec.mood}, {spec.mode}, {spec.tempo_bpm:g} bpm, {spec.meter}, "
        f"{spec.density} density, seed {spec.seed} ({loop.generator})"
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _generators(model_path: Path | None):
    """The model generator, or the rules when the model cannot be loaded (said in one line)."""
    from engine.making.model import ModelError, ModelGenerator
    from engine.making.rules import RuleGenerator

    rules = RuleGenerator()
    try:
        return ModelGenerator.load(model_path), rules
    except ModelError as error:
        log.warning("%s; writing loops with the rule-based generator", error)
        return None, rules


def run(args: argparse.Namespace) -> int:
    from engine.making.model import ModelError
    from engine.score.graph import GraphError, loop_spec
    from engine.score.load import load_graph

    try:
        graph = load_graph(args.graph)
    except GraphError as error:
        log.error("%s", error)
        return 2
    if args.state not in graph.states:
        log.error("unknown state %r; the graph has: %s", args.state, ", ".join(graph.states))
        return 2
    if args.count < 1:
        log.error("--count must be at least 1")
        return 2
    synth = None
    if args.render:
        from engine.making.soundfont import SoundFontNotFound, find_soundfont
        from engine.making.synth import Synth

        try:
            synth = Synth(find_soundfont(args.soundfont))
        except SoundFontNotFound as error:
            log.error("%s", error)
            return 2
    model, rules = _generators(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in range(args.seed, args.seed + args.count):
        spec = loop_spec(graph, args.state, seed)
        loop = None
        if model is not None:
            try:
                loop = model.generate(spec)
            except ModelError as error:
                log.warning("seed %d: %s; the rule-based generator writes this loop", seed, error)
        if loop is None:
            loop = rules.generate(spec)
        stem = args.out / f"{args.state}-{seed}"
        loop_midi(loop).save(str(stem.with_suffix(".mid")))
        piano_roll(loop, stem.with_suffix(".png"))
        written = [".mid", ".png"]
        if synth is not None:
            import soundfile

            from engine.making.workshop import STORAGE_DTYPE

            clip = synth.render(loop, STORAGE_DTYPE)  # the samples the daemon and export play
            soundfile.write(str(stem.with_suffix(".wav")), clip.mix, synth.sample_rate)
            written.append(".wav")
        print(f"{stem}{{{','.join(written)}}}: {len(loop.notes)} notes ({loop.generator})")
    return 0
