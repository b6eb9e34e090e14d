"""Offline rendering: the live engine driven by a virtual clock, as fast as it can go.

`segue render` reads a session script (a YAML list of timed events), applies each one
at its sample, and pulls the mixer block by block exactly as a sound card would. The
result is deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.control import addresses
from engine.control import commands as cmd
from engine.control.conductor import Conductor
from engine.control.engine import Engine
from engine.control.timeline import Timeline
from engine.making.workshop import InlineMaker, Workshop
from engine.score import yamlmarks
from engine.score.load import load_graph
from engine.score.music import SAMPLE_RATE


class ScriptError(ValueError):
    pass


@dataclass(frozen=True)
class ScriptItem:
    at_seconds: float
    command: cmd.Command


def load_script(path: str | Path) -> list[ScriptItem]:
    """Read a session script: `- {at: 2.0, event: enemy_spotted}`, `{param: intensity,
    value: 0.8}`, `{state: combat}`: any address of the OSC table that the Conductor applies,
    named by its last part, with its later arguments by name."""
    path = Path(path)
    try:
        doc = yamlmarks.load(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise ScriptError(f"{path}: cannot read: {exc.strerror}") from None
    except yamlmarks.YamlSyntaxError as exc:
        raise ScriptError(str(exc)) from None
    if isinstance(doc, dict) and "events" in doc:
        doc = doc["events"]
    if not isinstance(doc, list):
        raise ScriptError(f"{path}:1:1: a session script is a list of {{at: seconds, event: name}}")
    items = []
    for item, mark in zip(doc, doc.item_marks, strict=True):
        if not isinstance(item, dict) or "at" not in item:
            keys = ", ".join(row.key for row in addresses.scripted())
            raise ScriptError(f"{mark}: each item needs 'at' (seconds) and one of {keys}")
        at = item["at"]
        if not isinstance(at, int | float) or isinstance(at, bool) or at < 0:
            raise ScriptError(f"{item.value_mark('at')}: 'at' must be seconds >= 0, got {at!r}")
        try:
            command = addresses.from_script(item)
        except addresses.BadMessage as exc:
            raise ScriptError(f"{mark}: {exc}") from None
        items.append(ScriptItem(float(at), command))
    items.sort(key=lambda i: i.at_seconds)
    return items


@dataclass
class RenderResult:
    audio: np.ndarray  # (frames, 2) float32
    timeline: Timeline
    conductor: Conductor


def render(
    graph_path: str | Path,
    script: list[ScriptItem],
    *,
    seconds: float | None = None,
    seed: int = 0,
    workshop: Workshop,
    block_frames: int = 256,
    tail_seconds: float = 6.0,
    progress: bool = False,
) -> RenderResult:
    """Render a session; `seconds` defaults to the last scripted item plus a tail."""
    graph = load_graph(graph_path)
    virtual_ns = [0]
    timeline = Timeline(SAMPLE_RATE, keep=1 << 30)
    music = Engine.assemble(
        graph,
        InlineMaker(workshop),
        graph_path=graph_path,
        block_frames=block_frames,
        seed=seed,
        clock_ns=lambda: virtual_ns[0],
        timeline=timeline,
    )
    mixer, conductor = music.mixer, music.conductor
    conductor.start()
    if seconds is None:
        seconds = (script[-1].at_seconds if script else 0.0) + tail_seconds
    total = round(seconds * SAMPLE_RATE)
    out = np.zeros((total, 2), np.float32)
    pending = list(script)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=int(seconds), unit="s", desc="render", leave=False)
    frame = shown = 0
    while frame < total:
        virtual_ns[0] = frame * 1_000_000_000 // SAMPLE_RATE
        while pending and round(pending[0].at_seconds * SAMPLE_RATE) <= frame:
            conductor.handle(pending.pop(0).command)
        conductor.tick()
        frames = min(block_frames, total - frame)
        out[frame : frame + frames] = mixer.render(frames)
        frame += frames
        if bar is not None and frame >= shown + SAMPLE_RATE:
            bar.update(1)
            shown += SAMPLE_RATE
    conductor.tick()
    if bar is not None:
        bar.close()
    return RenderResult(out, timeline, conductor)
