"""MODEL_CARD.md, written from the manifest and the evaluation report of the shipped model."""

from __future__ import annotations

from pathlib import Path

from engine.making.model import BAR_TOKENS_PER_STEP, MAX_CHORD_NOTES, THIN_BIAS, THIN_FROM
from engine.train.sources import NOT_TRAINED_ON


def _commands(training: dict | None) -> list[str]:
    """The training commands that led to a checkpoint a run fine-tuned, oldest first."""
    if not training:
        return []
    return [*_commands(training.get("base")), training["command"]]


def _lineage(training: dict) -> list[str]:
    """A line for each training the shipped run was fine-tuned from, oldest first."""
    lines, base = [], training.get("base")
    while base:
        lines.insert(0, f"Fine-tuned from a checkpoint that `{base['command']}` trained: "
                        f"{base['steps']} steps in {base['minutes']} min, best validation NLL "
                        f"{base['best_val_nll']:.4f} nats/token. Then:")  # fmt: skip
        base = base.get("base")
    return lines


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _num(x, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def write_card(models_dir: Path, manifest: dict, report: dict) -> Path:
    arch = manifest["architecture"]
    training = manifest["training"]
    data = training["data"]
    nll = report["nll_nats_per_token"]
    labels = list(report["generated"])
    g = report["generated"][labels[0]]  # the model alone
    p = report["generated"][labels[-1]]  # shipped decoding
    t = report["timing_one_core"]
    size_mb = manifest["bytes"] / 1e6
    edges = data["density_edges"]

    decoding = report["generated"][labels[-1]]["sampling"]

    def motif(r: dict) -> str:
        m = r["motif_development"]
        return f"{_pct(m['iv_primed'])} ({_pct(m['iv_free'])})"

    def both(key: str) -> str:
        return f"{_pct(g[key]['all']['accuracy'])} / {_pct(p[key]['all']['accuracy'])}"

    lines = [
        "# Model card: Segue loop GRU",
        "",
        f"`{manifest['model']}`: {size_mb:.2f} MB, int8 (dynamic quantization of every MatMul),",
        f"sha256 `{manifest['sha256'][:16]}…`; manifest `{Path(manifest['model']).stem}.json`.",
        "",
        "## What it is",
        "",
        f"A {arch['layers']}-layer GRU language model (embedding {arch['embed']}, "
        f"hidden {arch['hidden']},",
        f"{training['parameters'] / 1e6:.2f} M parameters, vocabulary {arch['vocab']}) "
        "over Segue's loop",
        "tokens (engine/making/tokens.py): control tokens first (mood quadrant, mode,",
        "tempo bucket,",
        "density bucket, meter, parts present), then bar-aligned events (bar, the bar's chord,",
        "position on a 16th grid, part, key-relative pitch or GM drum key, duration+velocity).",
        "The model writes each bar's harmony before its notes: the chord token (a root relative",
        "to the tonic and major, minor or diminished, or none) is found in the training data",
        "from the notes that sound in the bar (bass counted twice, `with_chords` in",
        "engine/making/grammar.py), never labelled by hand. It is exported as one",
        "step (token + hidden state in → logits + hidden state out) with the GRU cell written as",
        "explicit MatMuls,",
        "so that onnxruntime quantizes it to int8. Segue samples it under the loop grammar",
        "(engine/making/model.py); the instruments come from the state, not the model.",
        "",
        "Controls are measured from the music, never hand-labelled (engine/train/controls.py): key",
        "by Krumhansl–Kessler key finding, the bass counted twice as a listener hears it;",
        f"density = distinct onsets per beat, low below {edges[0]:g},",
        f"high from {edges[1]:g}; arousal from tempo and density; valence from mode and register.",
        "",
        "## Training data",
        "",
        "| source | what | licence | pieces | 4-bar windows | tokens |",
        "|---|---|---|---|---|---|",
    ]
    for name, source in data["sources"].items():
        lines.append(
            f"| {name} | {source['what']} | {source['licence']} | {source['pieces']} | "
            f"{source['windows']} | {source['tokens']} |"
        )
    splits = data["splits"]
    left_out = data.get(
        "left_out",
        "Not used: music21's Essen folksongs (non-commercial licence) and the rest of its corpus.",
    )
    teacher = data.get("teacher_sha256")
    lines += [
        "",
        *(
            [
                f"The teacher of `segue_decoding` (the model shipped when the data was built,"
                f" unless `data --teacher` named another) has sha256 `{teacher[:16]}…`, decoded"
                " as Segue ships it: its loops teach the network what the priors add"
                " (engine/train/teacher.py)."
            ]
            if teacher
            else []
        ),
        *([left_out] if left_out else []),  # "": a build from a studio's folder alone
        NOT_TRAINED_ON,
        "Split by piece (hash of the piece id): "
        + ", ".join(f"{k} {v['pieces']} pieces / {v['windows']} windows" for k, v in splits.items())
        + ".",
        f"Tunes that appear twice (O'Neill's files overlap) count once "
        f"({data.get('duplicate_pieces_skipped', 0)} skipped); held-out windows identical to a",
        "training window are left out of validation and test. Ryan's and O'Neill's collections",
        "may still share a tune under two titles with small differences.",
        "",
        "Augmentation: pitches are key-relative (each window's tonic found by key finding), so",
        "transposition is an identity and every key shares one set of statistics; pieces with",
        "no tempo marking draw a tempo per window from a range typical of their repertoire.",
        "miditok is not used: Segue needs key-relative pitches, control tokens first, a",
        "grammar that constrains sampling and a numpy-only runtime, all of which",
        "engine/making/tokens.py",
        "gives in one small module without adding miditok (and its dependencies) to the daemon.",
        "",
        "## Training",
        "",
        *_lineage(training),
        f"{training['steps']} steps in {training['minutes']} min on "
        f"{training['config'].get('threads', 1)} CPU thread(s) "
        f"(stopped by {training['stopped_by']}); best validation NLL {training['best_val_nll']:.4f}"
        " nats/token. Seeded; AdamW, early stopping on validation NLL."
        + (
            " Training windows drawn by source share (not by window count): "
            + ", ".join(f"{k} {100 * v:.1f} %" for k, v in training["draw_shares"].items())
            + "."
            if training.get("draw_shares")
            else ""
        )
        + (
            " Within its source, a window whose first bar sounds the tonic chord is drawn "
            f"{training['config'].get('home_weight', 1.0):g} times as often as one that opens "
            f"away from home ({100 * home['windows']:.1f} % of the windows, "
            f"{100 * home['draws']:.1f} % of the draws): a game loop starts at home."
            if (home := training.get("opening_on_tonic"))
            and training["config"].get("home_weight", 1.0) != 1.0
            else ""
        )
        + (
            " Within its source, a window of n parts is drawn "
            f"{training['config']['parts_weight']:g}^(n-1) times as often as a window of one "
            "(draws by parts: "
            + ", ".join(f"{n} {100 * v:.1f} %" for n, v in training["parts_drawn"].items())
            + ")."
            if training.get("parts_drawn") and training["config"].get("parts_weight", 1.0) != 1.0
            else ""
        ),
        "",
        "Produced by:",
        "",
        "```",
        "python -m engine.train data",
        *_commands(training.get("base")),
        training["command"],
        *(
            [manifest["export_command"]]
            if manifest.get("export_command") != training["command"]
            else []
        ),
        "python -m engine.train evaluate  # also the last step of `all`",
        "```",
        "",
        "Fine-tuning on a studio's own MIDI: `python -m engine.train data --midi DIR`, then",
        "`python -m engine.train all --init runs/gru/best.pt --run runs/studio`.",
        "",
        "## Decoding",
        "",
        "Segue samples with temperature "
        f"{decoding['temperature']} and top-p {decoding['top_p']} under the loop grammar (exact",
        "bar count and meter, onsets inside the loop, only the requested parts, no empty bar,",
        "and at least the lowest onset rate of the requested density bucket: the loop may skip",
        "a 16th only while it can still reach it). Soft priors lean toward the request:",
        f"scale {decoding['scale_bias']} (out-of-scale pitches lose that much logit), third",
        f"{decoding['third_bias']} (the mode's third gains it), density {decoding['density_bias']}",
        "(next-onset gaps are favoured or disfavoured by how far the loop so far is from the",
        f"requested density), parts {decoding['parts_bias']} (a requested part gains up to that",
        "much as it rests, fully after a bar, after a pulse in a high loop), motif "
        f"{decoding['motif_interval_bias']}/{decoding['motif_pitch_bias']} (once a designer's",
        "motif is stated, its part favours the motif's intervals from its previous note and the",
        "motif's pitch classes). The motif itself is fixed in the grammar: its part plays it",
        "note for note from the loop start while the other parts play around it. A composer's",
        f"frame: harmony {decoding['harmony_bias']} (each loop draws a chord plan for its mode,",
        "one chord a bar from the tonic to one that leads back to it, the minor's dominant",
        "major, and the minor's VII and the major's iv borrowed; the bass's",
        "downbeats gain that much on the bar's root, the pad's first note of an onset on its",
        "chord tones, the lead's notes on a pulse half of it), pad chords",
        f"{decoding['pad_chord_bias']} (once the pad has started a note, the bar's chord tones",
        "above it, up to a triad; a tone the chord already sounds keeps",
        # (reports written before the share existed doubled freely: 1.0)
        f"{decoding.get('pad_double_share', 1.0)} of it, so the third comes before a doubling),",
        f"melody {decoding.get('step_bias', 0.0)} (the lead's first note off the pulse gains",
        "it a step from the lead's last note), pad legato (each pad note holds to the pad's",
        "next chord, no longer),",
        f"pulse {decoding['pulse_bias']} (lost per pulse an onset",
        f"would leave empty), groove {decoding['groove_bias']} (from the second bar, the",
        "bar before's onset positions gain it as the next onset, and where it had drums, the",
        "drums and its drum keys there: the rhythm repeats as a groove does). These were",
        "chosen on the eight tuning specs of",
        "engine/train/listening.py (`TUNING_SPECS`), never on its twelve held-out ones.",
        "",
        "Two hard limits bound the time to write a loop: at most "
        f"{MAX_CHORD_NOTES} notes per part per onset,",
        f"and at most {BAR_TOKENS_PER_STEP} tokens per 16th of a bar "
        f"({16 * BAR_TOKENS_PER_STEP} in 4/4), spent pro rata: a bar that has used its share",
        "up to the current 16th adds no more notes there and moves on, so no bar is cut short;",
        f"from {100 * THIN_FROM:.0f} % of that share, more notes at the current onset lose "
        f"{THIN_BIAS:g} logits.",
        "The strengths were chosen on tuning specs the evaluation does not use",
        "(`python -m engine.train sweep` and the same measures with the other priors on). The",
        "table below gives the model alone beside the shipped decoding.",
        "",
        "## Results (models/EVALUATION.md has the full tables)",
        "",
        "| figure | value |",
        "|---|---|",
        f"| held-out NLL, ONNX fp32 | {_num(nll['fp32'])} nats/token |",
        f"| held-out NLL, ONNX int8 (shipped) | {_num(nll['int8'])} nats/token |",
        f"| int8 vs fp32 | {_num(nll.get('int8_vs_fp32_percent'), 2)} % |",
        f"| mode accuracy (model alone / shipped decoding) | {both('mode')} |",
        f"| density accuracy | {both('density')} |",
        f"| mood quadrant accuracy | {both('quadrant')} |",
        f"| all requested parts play | {both('parts_exact')} |",
        f"| pitch-in-scale rate (held-out real {_pct(report['real_test']['in_scale_rate'])}) | "
        f"{_pct(g['in_scale_rate'])} / {_pct(p['in_scale_rate'])} |",
        "| lead after the example motif: motif intervals, primed (free) | "
        f"{motif(g)} / {motif(p)} |",
        f"| one 8-second loop, one core (best of {t['repeats']}) | p50 {t['p50_ms']:.1f} ms, "
        f"p99 {t['p99_ms']:.1f} ms (every run: p99 {t['p99_every_run_ms']:.1f} ms) |",
        "",
        "## Limits",
        "",
        "- Small data: drums come only from Freedoom's level music (65 pieces); four-part",
        "  textures from it, the chorales and the chamber works, which have no drums; the folk",
        "  tunes are single melodies.",
        "- Meters: " + ", ".join(manifest["controls"]["meter"]) + "; other meters fall back to the",
        "  rule-based generator. Time grid: 16th notes (triplets are rounded).",
        "- Mood is a proxy computed from tempo, density, mode and register, not a listener rating.",
        "  The model alone follows the mood quadrant weakly (see the table); tempo and density,",
        "  which the state sets, carry most of the arousal.",
        "- Left alone, the model gives the melody of four-part textures to the pad and lets the",
        "  lead rest for bars; the parts prior keeps every requested part playing.",
        "- Left alone, the model does not develop a motif: after the statement its lead keeps the",
        "  motif's intervals no more than without it. The development is the motif prior's.",
        "",
    ]
    path = models_dir / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path
