"""What the live view shows, built on the control thread from what it already knows.

`Snapshots.build()` is called at the push rate while a page is open. It reads what moves
with the music (state, clock, pending transition, parameters) straight from the conductor,
the new timeline entries and responses since the last call, the daemon's whole status only
every two seconds, and describes the graph and the playing loop only when they change, so a
push stays small (a few hundred bytes) and cheap to build.
Nothing here touches the audio thread's data but plain reads of published values.
"""

from __future__ import annotations

import collections
import os
import re
from pathlib import Path

from engine.score.graph import Graph
from engine.score.music import PARTS, PITCH_NAMES, SAMPLE_RATE

SCAN_ENTRIES = 400  # timeline entries a first push looks back at
MAX_WAITING = 200
RECHECK = 32  # recent changes watched for a later "cancelled" mark (a replaced transition)
RECHECK_KINDS = ("transition", "loop", "bridge")
# The status's figures that `live` carries ten times a second (or the page needs no more).
LIVE_KEYS = ("latency", "state", "tempo", "bar", "beat", "frame", "params", "muted", "solo",
             "pending", "next_beat_ms", "next_bar_ms", "grid_anchor_frame")  # fmt: skip
HEALTH_EVERY_S = 2.0  # the engine's health figures: the page redraws them every bar or so

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
        self._cursor: tuple[object, int] = (None, 0)  # the last timeline entry seen, and count
        self._waiting: list = []  # entries seen before their frame was known
        self._recheck: collections.deque = collections.deque(maxlen=RECHECK)
        self._cancelled: set[int] = set()
        self._graph = None
        self._loop = None
        self._error = None
        self._error_text = ""
        self._last_response = None
        self._health_due = 0.0

    def build(self) -> dict:
        """One push: the live figures, new timeline rows and responses; the engine's health
        every HEALTH_EVERY_S; the graph, loop and error when they changed (None otherwise)."""
        daemon = self.daemon
        conductor = daemon.conductor
        live = self._live(conductor)
        out = {"live": live, "timeline": self._new_entries(conductor.timeline),
               "responses": self._new_responses(conductor), "graph": None, "loop": None,
               "error": None, "health": None}  # fmt: skip
        now = self._clock()
        if now >= self._health_due:
            self._health_due = now + HEALTH_EVERY_S
            out["health"] = self._health()
        main = conductor.main
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

    @staticmethod
    def _live(conductor) -> dict:
        """What moves with the music, read from the conductor's published values (ten times
        a second: only what the page draws, not the whole status)."""
        frame = conductor.mixer.frames_rendered
        state = conductor.state
        graph = conductor.graph
        tempo = graph.states[state].tempo_bpm if state in graph.states else None
        bar = beat = None
        pos = conductor.position()
        if pos is not None:
            grid_state, beats = pos
            per_bar = grid_state.meter.beats_per_bar
            bar, beat = int(beats // per_bar) + 1, int(beats % per_bar) + 1
            tempo = grid_state.tempo_bpm
        main = conductor.main
        live = {"state": state, "tempo": tempo, "bar": bar, "beat": beat, "frame": frame,
                "sample_rate": SAMPLE_RATE, "loop": main.clip.loop.loop_id if main else None,
                "params": dict(conductor.params), "muted": sorted(conductor.muted),
                "solo": conductor.solo, "pending": None}  # fmt: skip
        pending = conductor.pending
        if pending is not None:
            in_ms = round((pending.switch - frame) / SAMPLE_RATE * 1000)
            live["pending"] = {"from": pending.state_before, "to": pending.rule.target,
                               "on": pending.rule.event, "exit": pending.rule.exit,
                               "in_ms": in_ms}  # fmt: skip
        if main is not None and main.anchor is not None and main.clip.frames:
            live["loop_position"] = round(((frame - main.anchor) % main.clip.frames)
                                          / main.clip.frames, 4)  # fmt: skip
        return live

    def _health(self) -> dict:
        """The engine's figures (the daemon's status less what `live` carries)."""
        health = self.daemon.status()
        for key in LIVE_KEYS:
            health.pop(key, None)
        health["rss_mb"] = _rss_mb()
        return health

    def _new_entries(self, timeline) -> list[dict]:
        """Rows for entries added since the last push whose frame is known, entries whose
        frame became known since, and recent changes that were cancelled since."""
        entries = timeline.entries
        fresh = entries[self._resume(entries) :]
        self._cursor = (entries[-1] if entries else None, len(entries))
        waiting, self._waiting = self._waiting, []
        rows = []
        for entry in waiting + fresh:
            if entry.frame is None:
                self._waiting.append(entry)
                continue
            self._uid += 1
            rows.append(self._row(entry, self._uid))
            if entry.kind in RECHECK_KINDS:
                self._recheck.append((entry, self._uid))
        del self._waiting[:-MAX_WAITING]  # a change that never plays is not waited for forever
        if len(self._cancelled) > 2 * RECHECK:
            self._cancelled &= {id(entry) for entry, _ in self._recheck}
        for entry, uid in self._recheck:
            if entry.data.get("cancelled") and id(entry) not in self._cancelled:
                self._cancelled.add(id(entry))
                rows.append(self._row(entry, uid))  # the page replaces its row
        return rows

    def _resume(self, entries: list) -> int:
        """Where the entries not yet looked at begin (the timeline trims its head in batches,
        so the last entry seen may have moved left)."""
        last, count = self._cursor
        if last is None:
            return max(0, len(entries) - SCAN_ENTRIES)  # the first push: the recent past
        for index in range(min(count, len(entries)) - 1, -1, -1):
            if entries[index] is last:
                return index + 1
        return max(0, len(entries) - SCAN_ENTRIES)

    @staticmethod
    def _row(entry, uid: int) -> dict:
        return {"uid": uid, "kind": entry.kind, **entry.data, "frame": entry.frame}

    def _new_responses(self, conductor) -> list[dict]:
        responses = conductor.responses
        new = []
        for response in reversed(responses):
            if response is self._last_response or len(new) >= 200:
                break
            new.append(response)
        if responses:
            self._last_response = responses[-1]
        device_ms = self.daemon.sink.output_latency_s * 1000 if new else 0.0
        rows = []
        for response in reversed(new):
            row = response.as_dict(SAMPLE_RATE)
            if "audible_ms" in row:
                row["audible_ms"] += device_ms
                row["musical_ms"] += device_ms
            rows.append({k: row[k] for k in ("event", "ack_ms", "audible_ms", "musical_ms")
                         if k in row})  # fmt: skip
        return rows
