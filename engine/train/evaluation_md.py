"""models/EVALUATION.md: the model evaluation's report (engine/train/evaluate.py) as text."""

from __future__ import annotations


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _num(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def markdown(r: dict) -> str:
    nll, real, t, gen = (
        r["nll_nats_per_token"],
        r["real_test"],
        r["timing_one_core"],
        r["generated"],
    )
    labels = list(gen)
    first = gen[labels[0]]
    head = "| " + " | ".join(labels) + " |"
    rule = "|---" * len(labels) + "|"
    lines = [
        "# Segue model evaluation",
        "",
        f"Model `{r['model']}` ({r['bytes'] / 1e6:.2f} MB), written by "
        "`python -m engine.train evaluate`.",
        "",
        "## Held-out NLL (test split, nats/token, after the control prefix)",
        "",
        *(
            [
                f"Measured by the last evaluation of this same file ({r['sha256'][:16]}…) on the",
                "dataset it was trained with, as are the real windows' figures: no dataset here.",
                "",
            ]
            if nll.get("from_last_evaluation")
            else []
        ),
        "| model | windows | NLL |",
        "|---|---|---|",
        f"| torch fp32, all test windows | {nll['test_windows_all']} | "
        f"{_num(nll['torch_fp32_all'], 4)} |",
        f"| torch fp32, real music's test windows (no teacher loops) | "
        f"{nll.get('test_windows_real', '–')} | {_num(nll.get('torch_fp32_real'), 4)} |",
        f"| ONNX fp32 twin | {nll['onnx_windows']} | {_num(nll['fp32'], 4)} |",
        f"| ONNX int8, shipped | {nll['onnx_windows']} | {_num(nll['int8'], 4)} |",
        "",
        f"int8 vs fp32 on the same windows: {_num(nll.get('int8_vs_fp32_percent'), 2)} %"
        + (
            f" (fp32 rows from the previous evaluation of this model: {', '.join(carried)} "
            "need torch and the training run's fp32 twin, absent here)"
            if (carried := nll.get("carried_over"))
            else ""
        ),
        "",
        "The tokens scored include each bar's chord token (the model writes a bar's harmony",
        "before its notes): these figures are not comparable with a model without them.",
        "",
        f"## Control accuracy ({first['loops']} generated 4-bar loops per column)",
        "",
        "Specs: random tonic, tempo 70–160 bpm, meter 4/4, 3/4 or 6/8, random part sets, each",
        "density and mood equally often; the mode follows the mood's valence. The grammar",
        "always guarantees bars, meter, onsets inside the loop and no unrequested part;",
        "everything below is measured on the notes. Columns are decoding configurations:",
        "",
    ]
    for label in labels:
        sm = gen[label]["sampling"]
        lines.append(
            f"- {label}: temperature {sm['temperature']}, top-p {sm['top_p']}; priors: scale "
            f"{sm['scale_bias']}, third {sm['third_bias']}, density {sm['density_bias']}, "
            f"parts {sm['parts_bias']}, motif {sm['motif_interval_bias']}/"
            f"{sm['motif_pitch_bias']}; density floor {'on' if sm['density_floor'] else 'off'}, "
            f"no empty bar {'on' if sm['fill_bars'] else 'off'}"
        )
    lines += [
        "",
        "Soft priors (added to the logits; they forbid nothing): the scale prior subtracts its",
        "value from out-of-scale pitches and the third prior adds its value to the mode's",
        "third; the density prior adds (too busy so far) or subtracts (too sparse) its value ×",
        "the log-ratio of densities (within ±1) × log(gap in 16ths) on the choice of the next",
        "onset; the parts prior adds its value × (rest so far / one bar, at most 1) to the part",
        "token of each requested part; the motif prior (intervals/pitch classes) applies to the",
        "part that states a motif (see below). Hard guarantees of the grammar: the density",
        "floor lets the loop skip a 16th only while it can still reach the lowest onset rate of",
        "the requested bucket; no bar may end without an onset.",
        "",
        "| control | value | n " + head,
        "|---|---|---" + rule,
    ]
    for control, key in (
        ("mode", "mode"),
        ("density", "density"),
        ("mood quadrant", "quadrant"),
        ("all requested parts play", "parts_exact"),
    ):
        for value, row in first[key].items():
            cells = " | ".join(_pct(gen[label][key][value]["accuracy"]) for label in labels)
            shown = value if key != "parts_exact" or value == "all" else f"{value} requested"
            lines.append(f"| {control} | {shown} | {row['n']} | {cells} |")
    lines += [
        "",
        "Loops the model could not write (ModelError: the engine would use the rules; counted",
        "as a miss above): " + ", ".join(f"{gen[k]['failures']} ({k})" for k in labels) + ".",
        "",
        "Mode is measured over the state's tonic (Krumhansl–Kessler major vs minor profile, the",
        "bass counted twice).",
        "Mode is judged only where the melodic parts play at least two pitch classes (n).",
        "With full 24-key finding instead: "
        + ", ".join(f"{_pct(gen[k]['mode_full_key_finding'])} ({k})" for k in labels)
        + "; tonic found: "
        + ", ".join(_pct(gen[k]["tonic_found"]) for k in labels)
        + ".",
        "",
        "## Motif development",
        "",
        f"The example graph's motif (`{first['motif_development']['motif']}`, moved to each",
        f"loop's key) primes {first['motif_development']['loops']} of the specs above that have",
        "a lead in 4/4; the same specs without it are the baseline. After the statement, the",
        "lead's top line is measured: the share of its notes in the motif's pitch classes and",
        "of its melodic steps that are one of the motif's intervals or their inversions.",
        "",
        "| lead after the motif | " + " | ".join(labels) + " |",
        "|---" + rule,
    ]
    for name, key in (("pitch classes of the motif", "pc"), ("motif intervals", "iv")):
        cells = " | ".join(
            f"{_pct(gen[k]['motif_development'][key + '_primed'])} "
            f"(free {_pct(gen[k]['motif_development'][key + '_free'])})"
            for k in labels
        )
        lines.append(f"| {name}, primed (free) | {cells} |")
    lines += [
        "",
        "## Music statistics (muspy's definitions, in numpy)",
        "",
        "| metric | held-out real " + head,
        "|---|---" + rule,
    ]
    for name, key, fmt in (
        ("pitch-in-scale rate", "in_scale_rate", _pct),
        ("pitch-class entropy (bits)", "pitch_class_entropy", _num),
        ("empty-bar rate", "empty_bar_rate", _pct),
    ):
        cells = " | ".join(fmt(gen[label][key]) for label in labels)
        lines.append(f"| {name} | {fmt(real[key])} | {cells} |")
    notes = " | ".join(_num(gen[label]["notes_per_loop"], 1) for label in labels)
    lines += [
        f"| notes per loop | – | {notes} |",
        "",
        f"Real: {real['windows']} held-out test windows (4 bars each), in their own key.",
        "",
        "## Time to write one 8-second loop (tokens → notes), one core",
        "",
        f"120 bpm, 4/4, 4 bars, all four parts, random mood/mode/density; {t['loops']} loops,",
        "shipped decoding, onnxruntime on 1 thread without spinning. Each loop is written",
        f"{t['repeats']} times and counts with its best time (the host's stalls on a shared",
        "machine are not the loop's cost); the last column counts every run.",
        "`benchmarks/bench_model.py` has the full table.",
        "",
        "| p50 | p99 | max | tokens p50 | tokens max | p99, every run |",
        "|---|---|---|---|---|---|",
        f"| {t['p50_ms']:.1f} ms | {t['p99_ms']:.1f} ms | {t['max_ms']:.1f} ms | "
        f"{t['tokens_p50']:.0f} | {t['tokens_max']} | {t['p99_every_run_ms']:.1f} ms |",
        "",
        f"Machine: {r['machine']}.",
        "",
    ]
    return "\n".join(lines)
