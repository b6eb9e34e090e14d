"""What happened, at which sample: events received, transitions, loops played.

The conductor records entries as it acts; a few of them (a crossfade that starts "at
the next block") only learn their sample once the mixer has played them, so entries
may carry a plan serial that `resolve` turns into a frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

# Entries are dropped from the head this many at a time: a list's head delete frees every
# entry in one C call with the GIL held (dropping 10 000 at once, each with its dict, held it
# 5-13 ms every 11 s at 1000 OSC messages a second: an underrun); 500 take well under 1 ms,
# and moving the list's other pointers down costs microseconds.
TRIM_BATCH = 500


@dataclass
class Entry:
    kind: str  # "event" | "transition" | "loop" | "error" | "reload"
    data: dict
    frame: int | None = None
    serial: int = 0  # plan whose start frame (+ offset) gives `frame`
    offset: int = 0


@dataclass
class Timeline:
    sample_rate: int
    entries: list[Entry] = field(default_factory=list)
    keep: int = 10_000  # the live daemon keeps the latest entries only

    def __post_init__(self) -> None:
        self._unresolved: list[Entry] = []

    def add(
        self, kind: str, data: dict, frame: int | None = None, serial: int = 0, offset: int = 0
    ) -> Entry:
        entry = Entry(kind, data, frame, serial, offset)
        self.entries.append(entry)
        if frame is None:
            self._unresolved.append(entry)
        if len(self.entries) >= self.keep + min(TRIM_BATCH, self.keep):
            del self.entries[: len(self.entries) - self.keep]
        return entry

    def resolve(self, start_frame) -> None:
        """Fill in frames of entries whose plan has started (`start_frame(serial)`)."""
        if not self._unresolved:
            return
        waiting = []
        for entry in self._unresolved:
            if entry.frame is not None:
                continue  # its frame was set by the conductor directly
            start = start_frame(entry.serial)
            if start is None:
                waiting.append(entry)
            else:
                entry.frame = start + entry.offset
        self._unresolved = waiting

    def to_json(self) -> dict:
        rate = self.sample_rate

        def row(e: Entry) -> dict:
            out = {"kind": e.kind, **e.data, "frame": e.frame}
            if e.frame is not None:
                out["seconds"] = round(e.frame / rate, 6)
            return out

        return {
            "sample_rate": rate,
            "events": [row(e) for e in self.entries if e.kind in ("event", "param", "state")],
            "transitions": [row(e) for e in self.entries if e.kind == "transition"],
            "loops": [row(e) for e in self.entries if e.kind == "loop"],
            "other": [row(e) for e in self.entries
                      if e.kind not in ("event", "param", "state", "transition", "loop")],
        }  # fmt: skip

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")
