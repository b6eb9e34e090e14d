"""MODEL_CARD.md, written from the manifest and the evaluation report of the shipped model."""

from __future__ import annotations

from pathlib import Path


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
    g = report["generated"][labels[0]]  # grammar only
    p = report["generated"][labels[-1]]  # shipped decoding
    t = report["timing_one_core"]
    size_mb = manifest["bytes"] / 1e6
    edges = data["density_edges"]

    decoding = report["generated"][labels[-1]]["sampling"]

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
        "tokens (engine/tokens.py): control tokens first (mood quadrant, mode, tempo bucket,",
        "density bucket, meter, parts present), then bar-aligned events (bar, position on a 16th",
        "grid, part, key-relative pitch or GM drum key, duration+velocity). It is exported as one",
        "step (token + hidden state in → logits + hidden state out) with the GRU cell written as",
        "explicit MatMuls,",
        "so that onnxruntime quantizes it to int8. Segue samples it under the loop grammar",
        "(engine/generator.py); the instruments come from the state, not the model.",
        "",
        "Controls are measured from the music, never hand-labelled (engine/train/controls.py): key",
        "by Krumhansl–Kessler key finding; density = distinct onsets per beat, low below "
        f"{edges[0]:g},",
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
    lines += [
        "",
        "Not used: music21's Essen folksongs (non-commercial licence) and the rest of its corpus.",
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
        "grammar that constrains sampling and a numpy-only runtime, all of which engine/tokens.py",
        "gives in one small module without adding miditok (and its dependencies) to the daemon.",
        "",
        "## Training",
        "",
        f"{training['steps']} steps in {training['minutes']} min on "
        f"{training['config'].get('threads', 1)} CPU thread(s) "
        f"(stopped by {training['stopped_by']}); best validation NLL {training['best_val_nll']:.4f}"
        " nats/token. Seeded; AdamW, early stopping on validation NLL.",
        "",
        "Produced by:",
        "",
        "```",
        "python -m engine.train data",
        training["command"],
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
        "bar count and meter, onsets inside the loop, only the requested parts). Three soft",
        f"priors lean toward the request: scale prior {decoding['scale_bias']} (out-of-scale",
        f"pitches lose that much logit), density prior {decoding['density_bias']} (next-onset",
        "gaps are favoured or disfavoured by how far the loop so far is from the requested",
        f"density), parts prior {decoding['parts_bias']} (requested parts not heard yet gain",
        "logit as the loop runs out). Two hard limits bound the time to write a loop: at most",
        "3 notes per part per onset, and at most 8 tokens per 16th of a bar (128 in 4/4; a bar",
        "that spends them ends there); a bar running ahead of that budget gets fewer notes per",
        "onset (more notes at the current onset lose 3 logits). The priors' strengths were",
        "chosen with",
        "`python -m engine.train sweep` on tuning specs the evaluation does not use. The table",
        "below gives the model alone (grammar only) beside the shipped decoding.",
        "",
        "## Results (models/EVALUATION.md has the full tables)",
        "",
        "| figure | value |",
        "|---|---|",
        f"| held-out NLL, ONNX fp32 | {_num(nll['fp32'])} nats/token |",
        f"| held-out NLL, ONNX int8 (shipped) | {_num(nll['int8'])} nats/token |",
        f"| int8 vs fp32 | {_num(nll.get('int8_vs_fp32_percent'), 2)} % |",
        f"| mode accuracy (grammar only / shipped decoding) | {both('mode')} |",
        f"| density accuracy | {both('density')} |",
        f"| mood quadrant accuracy | {both('quadrant')} |",
        f"| all requested parts play | {both('parts_exact')} |",
        f"| pitch-in-scale rate (held-out real {_pct(report['real_test']['in_scale_rate'])}) | "
        f"{_pct(g['in_scale_rate'])} / {_pct(p['in_scale_rate'])} |",
        f"| one 8-second loop, one core | p50 {t['p50_ms']:.1f} ms, p99 {t['p99_ms']:.1f} ms |",
        "",
        "## Limits",
        "",
        "- Small data: drums and four-part textures come only from Freedoom's level music; the",
        "  folk tunes are single melodies and the chorales are four voices without drums.",
        "- Meters: " + ", ".join(manifest["controls"]["meter"]) + "; other meters fall back to the",
        "  rule-based generator. Time grid: 16th notes (triplets are rounded).",
        "- Mood is a proxy computed from tempo, density, mode and register, not a listener rating.",
        "",
    ]
    path = models_dir / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path
