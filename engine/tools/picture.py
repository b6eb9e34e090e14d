"""A rendered session as one picture: states, transitions, stingers, parameters, loudness."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.score.music import SAMPLE_RATE

_COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3",
            "#8C8C8C", "#CCB974", "#64B5CD")  # fmt: skip


def timeline_png(timeline: dict, audio: np.ndarray, path: str | Path) -> None:
    """Draw the session: the level over time on top of coloured state bands, with
    transitions, bridges, stingers and events marked, and parameters below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = len(audio) / SAMPLE_RATE
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(14, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    # Level: RMS in 50 ms windows, in dBFS.
    window = SAMPLE_RATE // 20
    frames = len(audio) // window * window
    rms = np.sqrt((audio[:frames] ** 2).mean(axis=1).reshape(-1, window).mean(axis=1) + 1e-12)
    times = (np.arange(len(rms)) + 0.5) * window / SAMPLE_RATE
    top.plot(times, 20 * np.log10(rms), color="black", linewidth=0.8, label="level (dBFS RMS)")
    top.set_ylim(-60, 0)
    top.set_ylabel("dBFS")

    # State bands from the loops that played.
    loops = [lp for lp in timeline["loops"] if not lp.get("cancelled") and lp["frame"] is not None]
    states = sorted({lp["state"] for lp in loops}, key=[lp["state"] for lp in loops].index)
    colour = {s: _COLOURS[i % len(_COLOURS)] for i, s in enumerate(states)}
    for i, lp in enumerate(loops):
        start = lp["frame"] / SAMPLE_RATE
        end = loops[i + 1]["frame"] / SAMPLE_RATE if i + 1 < len(loops) else seconds
        top.axvspan(start, end, color=colour[lp["state"]], alpha=0.25, linewidth=0)
        top.text(start + 0.05, -4, f"{lp['state']}\n{lp['generator']}", fontsize=7, va="top")
    for t in timeline["transitions"]:
        if t.get("cancelled") or t["frame"] is None:
            continue
        x = t["frame"] / SAMPLE_RATE
        top.axvline(x, color="black", linestyle="--", linewidth=0.8)
        top.text(x, -58, f" {t['on']} ({t['exit']})", fontsize=7, rotation=90, va="bottom")
    for row in timeline["other"]:
        if row["kind"] in ("stinger", "bridge") and row["frame"] is not None:
            x = row["frame"] / SAMPLE_RATE
            marker = "*" if row["kind"] == "stinger" else "s"
            label = row.get("stinger") or "bridge"
            top.plot([x], [-10], marker=marker, color="crimson", markersize=9)
            top.text(x, -13, label, fontsize=7, color="crimson", ha="center", va="top")
    for row in timeline["events"]:
        if row["kind"] == "event":
            top.plot([row["frame"] / SAMPLE_RATE], [-2], marker="v", color="gray", markersize=5)

    # Parameters as steps.
    params: dict[str, list[tuple[float, float]]] = {}
    for row in timeline["events"]:
        if row["kind"] == "param":
            params.setdefault(row["param"], []).append((row["frame"] / SAMPLE_RATE, row["value"]))
    for name, points in params.items():
        xs = [x for x, _ in points] + [seconds]
        ys = [y for _, y in points] + [points[-1][1]]
        bottom.step(xs, ys, where="post", label=name)
    if params:
        bottom.legend(loc="upper left", fontsize=8)
    bottom.set_ylabel("parameters")
    bottom.set_xlabel("seconds")
    bottom.set_xlim(0, seconds)
    top.set_title(
        "Segue session: states (bands), transitions (dashed), stingers (*), "
        "bridges (■), events (▼)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
