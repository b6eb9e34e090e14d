"""What the live view shows, built on the control thread from what it already knows.

`Snapshots.build()` is called at the push rate while a page is open. It reads the
conductor's status, the new timeline entries and responses since the last call, and
describes the graph and the playing loop only when they change, so a push stays small.
Nothing here touches the audio thread's data but plain reads of published values.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from engine.graph import Graph
from engine.music import PARTS, PITCH_NAMES, SAMPLE_RATE

SCAN_ENTRIES = 400  # timeline entries looked at per push (a minute holds far fewer)
KEEP_SENT = 4000  # entries remembered as sent before the memory is pruned
RSS_EVERY_S = 1.0

_ERROR = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): (?P<message>.*)$", re.S)


def describe_graph(graph: Graph) -> dict:
    """The graph as the page draws it: states, transitions, controls."""
    states = []
    for state in graph.states.values():
        states.append({
            "name": state.name, "mood": state.mood, "mode": state.mode,
            "key": PITCH_NAMES[state.tonic], "tempo": state.tempo_bpm, "meter": str(state.meter),
            "bars": state.bars, "density": state.density, "once": state.once, "next": state.next,
            "instruments": {part: inst.name for part, inst in state.instruments},
            "layers": [{"part": x.part, "param": x.param, "points": x.points}
                       for x in state.layers],
            "cues": dict(state.cues),
            "line": state.mark.line if state.mark else None,
        })  # fmt: skip
    transitions = []
    for rule in graph.transitions:
        transitions.append({
            "from": rule.source, "to": rule.target,
            "on": None if rule.condition else rule.event,
            "when": str(rule.condition) if rule.condition else None,
            "exit": rule.exit, "entry": rule.entry, "fade_out": str(rule.fade_out),
            "fade_in": str(rule.fade_in), "curve": rule.curve, "stinger": rule.stinger,
            "respond_stinger": rule.respond_stinger, "duck_db": rule.duck_db,
            "bridge_bars": rule.bridge_bars, "priority": rule.priority,
            "while_pending": rule.while_pending,
            "line": rule.mark.line if rule.mark else None,
        })  # fmt: skip
    parts = sorted({p for s in graph.states.values() for p, _ in s.instruments}, key=PARTS.index)
    return {
        "path": graph.path,
        "initial": graph.initial,
        "states": states,
        "transitions": transitions,
        "events": sorted(graph.events),
        "stingers": [{"name": s.name, "quantize": s.quantize, "cooldown_s": s.cooldown_seconds,
                      "instrument": s.instrument.name} for s in graph.stingers.values()],
        "parameters": [{"name": p.name, "default": p.default, "low": p.low, "high": p.high}
                       for p in graph.parameters.values()],
        "parts": parts,
    }  # fmt: skip


def describe_error(error: str, graph_path: str | Path) -> dict | None:
    """A graph error split into file, line, column and message, with the offending line
    read from the file (only a file inside the graph's folder)."""
    if not error:
        return None
    out: dict = {"text": error}
    match = _ERROR.match(error)
    if match is None:
        return out
    line = int(match["line"])
    out |= {"file": match["file"], "line": line, "column": int(match["column"]),
            "message": match["message"]}  # fmt: skip
    folder = Path(graph_path).resolve().parent
    path = Path(match["file"]).resolve()
    if path.is_relative_to(folder):
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return out
        if 0 < line <= len(lines):
            out["source"] = lines[line - 1]
    return out


def describe_loop(clip) -> dict:
    """The playing loop as a piano roll: [part index, pitch, start, duration, velocity]."""
    loop = clip.loop
    spec = loop.spec
    parts = list(clip.parts)
    notes = [[parts.index(n.part) if n.part in parts else 0, n.pitch,
              round(n.start_beats, 4), round(n.duration_beats, 4), n.velocity]
             for n in loop.notes]  # fmt: skip
    return {"loop": loop.loop_id, "generator": loop.generator, "state": spec.state,
            "beats": spec.beats, "beats_per_bar": spec.meter.beats_per_bar * 4
            / spec.meter.beat_unit, "parts": parts, "frames": clip.frames,
            "drums": [p == "drums" for p in parts], "notes": notes}  # fmt: skip


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


class Snapshots:
    """Builds the pushes for one daemon (control thread only)."""

    def __init__(self, daemon, clock=None) -> None:
        import time

        self.daemon = daemon
        self._clock = clock or time.monotonic
        self._uid = 0
        self._sent: dict[int, tuple[object, int, bool]] = {}  # id(entry) -> (entry, uid, cancelled)
        self._graph = None
        self._loop = None
        self._error = None
        self._error_text = ""
        self._last_response = None
        self._rss = (0.0, -RSS_EVERY_S)

    def build(self) -> dict:
        """One push: live status, new timeline rows and responses, and the graph, loop and
        error when they changed (None otherwise)."""
        daemon = self.daemon
        conductor = daemon.conductor
        live = daemon.status()
        live.pop("latency", None)  # responses travel one by one below
        live["sample_rate"] = SAMPLE_RATE
        pending = conductor.pending
        if pending is not None:
            live["pending"] = (live.get("pending") or {}) | {
                "from": pending.state_before,
                "on": pending.rule.event,
            }
        main = conductor.main
        if main is not None and main.anchor is not None and main.clip.frames:
            live["loop_position"] = ((conductor.mixer.frames_rendered - main.anchor)
                                     % main.clip.frames) / main.clip.frames  # fmt: skip
        now = self._clock()
        if now - self._rss[1] >= RSS_EVERY_S:
            self._rss = (_rss_mb(), now)
        live["rss_mb"] = self._rss[0]
        out = {"live": live, "timeline": self._new_entries(conductor.timeline),
               "responses": self._new_responses(conductor, live), "graph": None,
               "loop": None, "error": None}  # fmt: skip
        if conductor.graph is not self._graph:
            self._graph = conductor.graph
            out["graph"] = describe_graph(conductor.graph)
        if main is not None and main.clip is not self._loop:
            self._loop = main.clip
            out["loop"] = describe_loop(main.clip)
        if conductor.last_error != self._error_text:
            self._error_text = conductor.last_error
            self._error = describe_error(conductor.last_error, daemon.config.graph_path) or {}
            out["error"] = self._error
        return out

    def _new_entries(self, timeline) -> list[dict]:
        """Entries whose frame is known and that were not sent (or were cancelled since)."""
        rows = []
        sent = self._sent
        for entry in timeline.entries[-SCAN_ENTRIES:]:
            if entry.frame is None:
                continue
            cancelled = bool(entry.data.get("cancelled"))
            known = sent.get(id(entry))
            if known is not None and known[0] is entry and known[2] == cancelled:
                continue
            if known is not None and known[0] is entry:
                uid = known[1]
            else:
                self._uid += 1
                uid = self._uid
            sent[id(entry)] = (entry, uid, cancelled)
            rows.append({"uid": uid, "kind": entry.kind, **entry.data, "frame": entry.frame})
        if len(sent) > KEEP_SENT:
            recent = {id(e) for e in timeline.entries[-SCAN_ENTRIES:]}
            self._sent = {k: v for k, v in sent.items() if k in recent}
        return rows

    def _new_responses(self, conductor, live: dict) -> list[dict]:
        responses = conductor.responses
        new = []
        for response in reversed(responses):
            if response is self._last_response or len(new) >= 200:
                break
            new.append(response)
        if responses:
            self._last_response = responses[-1]
        device_ms = live.get("sink", {}).get("output_latency_ms", 0.0)
        rows = []
        for response in reversed(new):
            row = response.as_dict(SAMPLE_RATE)
            if "audible_ms" in row:
                row["audible_ms"] += device_ms
                row["musical_ms"] += device_ms
            rows.append({k: row[k] for k in ("event", "ack_ms", "audible_ms", "musical_ms")
                         if k in row})  # fmt: skip
        return rows
