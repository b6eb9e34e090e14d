"""The Conductor's staging: what it hands to the mixer, to subscribers and to the timeline.

One object owns the plan serials and the layers of the last published plan, resolves plan
serials to the absolute frames the mixer started them at, queues the messages for
subscribers (the outbox), and keeps the event responses until the mixer has played them.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

from engine.audio.mixer import Layer, Mixer, MixPlan
from engine.control import clock
from engine.control.clock import Main
from engine.control.timeline import Timeline


@dataclass
class Response:
    """How fast one event was answered (for status, timelines and benchmarks)."""

    event: str
    received_ns: int
    applied_ns: int
    serial: int  # the plan that carries the response
    offset: int  # frames after that plan's start where the structural change happens
    applied_frame: int = 0  # the mixer's frame when the event was applied
    audible_offset: int = 0  # frames after the plan's start where it is first heard
    begins_frame: int | None = None  # the first frame of the block that carries the plan
    audible_ns: int | None = None  # when that block was mixed (+ audible_offset)

    def as_dict(self, sample_rate: int) -> dict:
        out = {
            "event": self.event,
            "ack_ms": (self.applied_ns - self.received_ns) / 1e6,
            "received_ns": self.received_ns,
            "mixed_ns": self.audible_ns,
        }
        if self.begins_frame is not None:
            out["frames_after_apply"] = self.begins_frame - self.applied_frame
        if self.audible_ns is not None:
            out["audible_ms"] = (self.audible_ns - self.received_ns) / 1e6
            out["musical_ms"] = out["audible_ms"] + (self.offset - self.audible_offset) / (
                sample_rate / 1000
            )
        return out


class Stage:
    def __init__(self, mixer: Mixer, timeline: Timeline, sample_rate: int) -> None:
        self.mixer = mixer
        self.timeline = timeline
        self.sample_rate = sample_rate
        self.layers: list[Layer] = []  # those of the last published plan
        self.outbox: collections.deque = collections.deque(maxlen=4096)
        # The recent ones (the live view, /segue/status): 4096 took 17 minutes to fill at the
        # soak's rate, a slow climb that read like a leak.
        self.responses: collections.deque = collections.deque(maxlen=1024)
        self._serial = 0
        self._unresolved: list[Response] = []
        self.ends: list[tuple[int, str, str]] = []  # (frame, from, to): transition ends to send
        self.beat_done = -1  # the last frame a beat callback was sent for
        self.bar_number = 0

    @property
    def now(self) -> int:
        """The mixer's frame: everything before it has been rendered."""
        return self.mixer.frames_rendered

    @property
    def start_frame(self) -> Callable[[int], int | None]:
        return self.mixer.start_frame

    def next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def publish(self, serial: int, layers: list[Layer]) -> None:
        self.layers = layers
        self.mixer.publish(MixPlan(serial, tuple(layers)))

    def replace(self, old: Layer, new: Layer) -> None:
        """`new` stands in for `old` in the layers (publish them to be heard)."""
        self.layers = [new if layer is old else layer for layer in self.layers]

    def absolute(self, base: int, offset: int) -> int:
        """Absolute frame of (base, offset); an unstarted plan starts at the next block."""
        start = self.mixer.start_frame(base)
        return (self.mixer.frames_rendered if start is None else start) + offset

    def notify(self, address: str, *args, at: int | None = None) -> None:
        """Queue a message for subscribers; `at` is the frame it refers to (for a timetag)."""
        self.outbox.append((address, args, self.mixer.frames_rendered if at is None else at))

    def record(
        self,
        kind: str,
        data: dict,
        *,
        serial: int | None = None,
        offset: int = 0,
        frame: int | None = None,
    ):
        """A timeline entry at an absolute frame, or at (plan serial, offset): with serial 0
        the offset is itself the absolute frame."""
        if serial is None:
            return self.timeline.add(kind, data, frame=self.now if frame is None else frame)
        entry = self.timeline.add(kind, data, serial=serial, offset=offset)
        if serial == 0:
            entry.frame = offset
        return entry

    def respond(self, response: Response) -> None:
        """Keep `response` until the mixer has played the plan that carries it."""
        self._unresolved.append(response)

    def resolve(self) -> None:
        """Give timeline entries and responses the frames and times the mixer played them at."""
        self.timeline.resolve(self.mixer.start_frame)
        if not self._unresolved:
            return
        keep = []
        for r in self._unresolved:
            seen = self.mixer.seen_ns(r.serial)
            if seen is None:
                keep.append(r)
            else:
                r.begins_frame = self.mixer.start_frame(r.serial)
                r.audible_ns = seen + round(r.audible_offset * 1e9 / self.sample_rate)
                self.responses.append(r)
        self._unresolved = keep

    def announce(self, grid: Main | None, now: int, horizon: int) -> tuple[int, int]:
        """Send the transition ends due by `now`, and the beats and bars of `grid` up to
        `horizon` (just ahead of the audio); returns how many beats and bars were sent."""
        while self.ends and self.ends[0][0] <= now:
            frame, source, target = self.ends.pop(0)
            self.notify("/segue/transition", "end", source, target, at=frame)
        if grid is None or grid.anchor is None:
            return 0, 0
        beats = bars = 0
        state = grid.state
        beat = clock.beat_frames(state, self.sample_rate)
        due = clock.beats_due(grid.anchor, beat, state.meter.beats_per_bar, self.beat_done, horizon)
        for frame, beat_in_bar in due:
            if beat_in_bar == 1:
                self.bar_number += 1
                bars += 1
                self.notify("/segue/bar", self.bar_number, at=frame)
            beats += 1
            self.notify("/segue/beat", self.bar_number, beat_in_bar, at=frame)
            data = {"bar": self.bar_number, "beat": beat_in_bar, "state": state.name}
            self.record("beat", data, frame=frame)
            self.beat_done = frame
        return beats, bars
