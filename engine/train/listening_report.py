"""The listening report: LISTENING.md's tables, the piano rolls, and `listen`'s entry point
(the measures themselves are in engine/train/listening.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from engine.score.music import PARTS
from engine.train.listening import Excerpt, evaluate


def _fmt(value, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * value:.1f} %" if pct else f"{value:.2f}"  # 94.6 %, not a rounded 95 %


def markdown(r: dict) -> str:
    names = list(r["makers"])
    cols = [*names, "real game music"]
    overall = [r["makers"][n]["overall"] for n in names] + [r["real"]]
    lines = [
        "# Loops as a listener hears them",
        "",
        f"{len(r['specs'])} {'held-out' if r.get('held_out', True) else 'tuning'} state specs "
        f"× {r['loops_per_spec']} loops per maker; real "
        f"music: {r['real']['source']} ({r['real']['loops']} windows). Definitions: "
        "engine/train/listening.py. "
        + (
            "`python -m engine.train listen` wrote this file."
            if r.get("held_out", True)
            else "`python -m engine.train listen --tuning` printed this."
        ),
        "",
        "| measure | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    rows = [("key as heard = requested", "key_heard", True), ("mode as heard", "mode_heard", True),
            ("empty beats (median)", "empty_beats", True),
            ("empty beats (mean)", "empty_beats_mean", True),
            ("pitch-class entropy, bits", "pc_entropy", False),
            ("scale consistency", "scale_consistency", False),
            ("polyphony at onsets", "polyphony", False),
            ("pad sounds 2+ notes (share of its time)", "pad_chords", True),
            ("rhythm: a bar repeats one of the two before it", "rhythm_repeats", True),
            ("drums: a bar repeats one of the two before it", "groove_repeats", True)]  # fmt: skip
    for label, key, pct in rows:
        lines.append(f"| {label} | " + " | ".join(_fmt(o.get(key), pct) for o in overall) + " |")
    for d in ("low", "medium", "high", "all"):
        cells = [_fmt(o["notes_per_bar"].get(d)) for o in overall]
        lines.append(f"| notes per bar, median ({d}) | " + " | ".join(cells) + " |")
    for part in PARTS:
        cells = [_fmt(o["parts"].get(part, {}).get("notes_per_bar")) for o in overall]
        lines.append(f"| {part}: notes per bar, median | " + " | ".join(cells) + " |")
    for part in ("bass", "pad", "lead"):
        cells = [_fmt(o["parts"].get(part, {}).get("register")) for o in overall]
        lines.append(f"| {part}: register, median MIDI pitch | " + " | ".join(cells) + " |")
    if whole := r.get("real_whole"):
        lines += ["", f"The same {whole['tracks']} real tracks measured whole, not in 8-bar "
                  f"windows: pitch-class entropy {_fmt(whole['pc_entropy'])} bits, scale "
                  f"consistency {_fmt(whole['scale_consistency'])} (medians). A whole track "
                  "modulates and borrows where one 8-bar window seldom does."]  # fmt: skip
    lines += ["", "## Per state spec (key as heard / empty beats / notes per bar)", "",
              "| spec | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]  # fmt: skip
    for spec in r["specs"]:
        cells = []
        for n in names:
            s = r["makers"][n]["per_spec"][spec]
            cells.append(f"{_fmt(s['key_heard'], True)} / {_fmt(s['empty_beats'], True)} / "
                         f"{_fmt(s['notes_per_bar']['all'])}")  # fmt: skip
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    lines += ["", "![piano rolls](listening.png)", ""]
    return "\n".join(lines)


def piano_rolls(sheets: dict[str, Excerpt], path: Path) -> None:
    """One piano roll per maker and a real excerpt; drums in their own lane underneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"drums": "#8C8C8C", "bass": "#4C72B0", "pad": "#55A868", "lead": "#C44E52"}
    fig, axes = plt.subplots(len(sheets), 1, figsize=(12, 2.6 * len(sheets)), squeeze=False)
    for ax, (name, x) in zip(axes[:, 0], sheets.items(), strict=True):
        for n in x.sounding():
            y = 8 + (n.pitch - 35) / 3 if n.part == "drums" else n.pitch
            ax.barh(y, n.duration_beats, left=n.start_beats, height=0.8,
                    color=colours.get(n.part, "#333"))  # fmt: skip
        for bar in range(x.bars + 1):
            ax.axvline(bar * x.bar_quarters, color="#ddd", lw=0.8, zorder=0)
        ax.set_xlim(0, x.quarters)
        ax.set_title(name, loc="left", fontsize=10)
        ax.set_ylabel("pitch")
    axes[-1, 0].set_xlabel("quarter notes (grey: bar lines; drums in the bottom lane)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    axes[0, 0].legend(handles, list(colours), loc="upper right", fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(model: Path | None, loops: int, out: Path, tuning: bool = False) -> int:
    r = evaluate(model, loops, tuning)
    if tuning:  # what the priors were tuned on: printed, never written over the held-out files
        r.pop("_sheets")
        print(markdown(r))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    piano_rolls(r.pop("_sheets"), out / "listening.png")
    (out / "listening.json").write_text(json.dumps(r, indent=1) + "\n")
    text = markdown(r)
    (out / "LISTENING.md").write_text(text)
    print(text)
    return 0
