"""The control side: applies commands, keeps the musical clock, publishes mix plans.

Single-threaded and clock-agnostic: the live daemon calls `handle` and `tick` from its
control thread; the offline renderer calls them between blocks with a virtual clock.
Both run this exact code, so a render previews what plays live.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from dataclasses import dataclass, field, replace

from engine import commands as cmd
from engine.graph import Graph, GraphError, State, Transition, load_graph
from engine.mixer import CURVES, EQUAL_POWER, Layer, Mixer, MixPlan
from engine.music import SAMPLE_RATE, Clip
from engine.pool import LoopPool
from engine.timeline import Timeline

log = logging.getLogger("segue.conductor")

SWAP_FADE_SECONDS = 0.01  # loop-to-loop seam inside a state: short, click-free
REFRESH_FADE_SECONDS = 0.3  # a live edit replaces the current loop this fast
FORCE_FADE_SECONDS = 0.5  # /segue/state with no matching rule
SCHEDULE_AHEAD_SECONDS = 0.3  # how early a loop swap is published


@dataclass
class Counters:
    commands: int = 0
    events: int = 0
    unknown_events: int = 0
    unknown_states: int = 0
    unknown_params: int = 0
    transitions: int = 0
    loops_played: int = 0
    loop_repeats_no_fresh: int = 0
    reloads: int = 0
    reload_errors: int = 0
    waited_for_loop: int = 0


@dataclass
class Main:
    """The loop that carries the state (and the musical clock)."""

    state: State
    clip: Clip
    layer: Layer
    anchor: int | None = None  # absolute frame of audio[0], once the mixer has started it
    swap_at: int | None = None  # absolute frame of the next fresh loop (or one-shot exit)


@dataclass
class Response:
    """How fast one event was answered (for status, timelines and benchmarks)."""

    event: str
    received_ns: int
    applied_ns: int
    serial: int  # the plan that carries the response
    offset: int  # frames after that plan's start where the change begins
    applied_frame: int = 0  # the mixer's frame when the event was applied
    begins_frame: int | None = None  # the first frame of the block that carries it
    audible_ns: int | None = None
    musical_frame: int | None = None

    def as_dict(self, sample_rate: int) -> dict:
        out = {"event": self.event, "ack_ms": (self.applied_ns - self.received_ns) / 1e6,
               "received_ns": self.received_ns, "mixed_ns": self.audible_ns}  # fmt: skip
        if self.begins_frame is not None:
            out["frames_after_apply"] = self.begins_frame - self.applied_frame
        if self.audible_ns is not None:
            out["audible_ms"] = (self.audible_ns - self.received_ns) / 1e6
            out["musical_ms"] = out["audible_ms"] + self.offset / sample_rate * 1000
        return out


@dataclass
class Conductor:
    graph: Graph
    pool: LoopPool
    mixer: Mixer
    block_frames: int = 256
    sample_rate: int = SAMPLE_RATE
    timeline: Timeline | None = None
    clock_ns: object = time.monotonic_ns
    graph_path: str | None = None

    state: str = ""
    previous_state: str = ""
    params: dict[str, float] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    last_error: str = ""
    outbox: collections.deque = field(default_factory=lambda: collections.deque(maxlen=1024))
    responses: collections.deque = field(default_factory=lambda: collections.deque(maxlen=4096))

    def __post_init__(self) -> None:
        self._serial = 0
        self._layers: list[Layer] = []
        self.main: Main | None = None
        self._clock: Main | None = None  # the main that sets the bar grid right now
        self._refresh_current = False
        self._waiting: tuple[Transition, int] | None = None  # a rule whose loop is not ready
        self._unresolved: list[Response] = []
        self.params = {p.name: p.default for p in self.graph.parameters.values()}
        if self.timeline is None:
            self.timeline = Timeline(self.sample_rate)

    # -- start ----------------------------------------------------------------------

    def start(self) -> None:
        """Begin playing the initial state (the pool must be filled for it)."""
        self.pool.set_graph(self.graph)
        self.pool.wait_ready([self.graph.initial])
        self.state = self.graph.initial
        clip = self.pool.take(self.state)
        serial = self._next_serial()
        layer = Layer(clip.mix, base=serial, anchor=0, start=0, tag=clip.loop.loop_id)
        self.main = Main(self.graph.states[self.state], clip, layer)
        self._clock = self.main
        self._publish(serial, [layer])
        self._record_loop(clip, serial, 0)
        self._notify("/segue/state", self.state)

    # -- commands ---------------------------------------------------------------------

    def handle(self, command: cmd.Command) -> object | None:
        """Apply one command now; returns a reply payload for Status, else None."""
        self.counters.commands += 1
        received = command.received_ns or self.clock_ns()
        now = self.mixer.frames_rendered
        if isinstance(command, cmd.Event):
            self.counters.events += 1
            self.timeline.add("event", {"event": command.name}, frame=now)
            rule = self.graph.transition_for(self.state, command.name)
            if rule is None:
                if command.name not in self.graph.events:
                    self.counters.unknown_events += 1
                    return {"ignored": f"unknown event {command.name!r}"}
                return {"ignored": f"no rule for {command.name!r} in state {self.state!r}"}
            self._transition(rule, received)
        elif isinstance(command, cmd.SetState):
            self.timeline.add("state", {"state": command.name}, frame=now)
            if command.name not in self.graph.states:
                self.counters.unknown_states += 1
                return {"error": f"unknown state {command.name!r}"}
            if command.name != self.state:
                rule = next((r for r in self.graph.transitions
                             if r.target == command.name and r.source == self.state), None)
                rule = rule or Transition(self.state, "/segue/state", command.name,
                                          fade=_seconds(FORCE_FADE_SECONDS))  # fmt: skip
                self._transition(rule, received)
        elif isinstance(command, cmd.SetParam):
            self.timeline.add("param", {"param": command.name, "value": command.value}, frame=now)
            spec = self.graph.parameters.get(command.name)
            if spec is None:
                self.counters.unknown_params += 1
                return {"error": f"unknown parameter {command.name!r}"}
            self.params[command.name] = min(max(command.value, spec.low), spec.high)
        elif isinstance(command, cmd.Reload):
            self.reload()
        elif isinstance(command, cmd.Status):
            return self.status()
        return None

    def reload(self, graph: Graph | None = None) -> bool:
        """Adopt a new graph (or re-read the file). A broken one keeps the old graph."""
        if graph is None:
            try:
                graph = load_graph(self.graph_path or self.graph.path)
            except GraphError as exc:
                self.counters.reload_errors += 1
                self.last_error = str(exc)
                self.timeline.add("error", {"error": str(exc)}, frame=self.mixer.frames_rendered)
                log.error("graph not reloaded, the old one keeps playing: %s", exc)
                self._notify("/segue/error", str(exc))
                return False
        changed = self.pool.set_graph(graph)
        self.graph = graph
        self.counters.reloads += 1
        self.last_error = ""
        self.params = {
            p.name: self.params.get(p.name, p.default) for p in graph.parameters.values()
        }
        self.timeline.add("reload", {"changed": sorted(changed)}, frame=self.mixer.frames_rendered)
        log.info("graph reloaded; states with new music: %s", ", ".join(sorted(changed)) or "none")
        self._notify("/segue/reload", ",".join(sorted(changed)))
        if self.state not in graph.states:
            rule = Transition(self.state, "/segue/reload", graph.initial,
                              fade=_seconds(FORCE_FADE_SECONDS))  # fmt: skip
            self._transition(rule, self.clock_ns())
        elif self.state in changed:
            self._refresh_current = True
        return True

    # -- the clock ----------------------------------------------------------------------

    def tick(self) -> None:
        """Advance control-side work: pick up loops, resolve times, schedule swaps."""
        self.pool.poll()
        self._resolve()
        now = self.mixer.frames_rendered
        if self._waiting is not None:
            rule, received = self._waiting
            if self.pool.ready.get(rule.target):
                self._waiting = None
                self._transition(rule, received)
        if self._refresh_current and self.pool.ready.get(self.state):
            self._refresh_current = False
            self._replace_main(self.state, _seconds(REFRESH_FADE_SECONDS), "refresh")
        main = self.main
        if main is None or main.swap_at is None:
            return
        ahead = round(SCHEDULE_AHEAD_SECONDS * self.sample_rate)
        if now + ahead < main.swap_at:
            return
        state = main.state
        if state.once:
            target = state.next or self.previous_state or self.graph.initial
            if target in self.graph.states and target != state.name:
                rule = Transition(state.name, "once", target, exit="loop_end",
                                  fade=_seconds(SWAP_FADE_SECONDS))  # fmt: skip
                self._transition(rule, self.clock_ns())
                return
        clip = self.pool.take(state.name)
        if clip is None:
            self.counters.loop_repeats_no_fresh += 1
            main.swap_at += main.clip.frames
            return
        self._swap(clip, main.swap_at)

    def _resolve(self) -> None:
        start = self.mixer.start_frame
        self.timeline.resolve(start)
        for m in (self.main, self._clock):
            if m is not None and m.anchor is None:
                base = start(m.layer.base)
                if base is not None:
                    m.anchor = base + m.layer.anchor
                    m.swap_at = m.anchor + m.clip.frames * (1 if m.state.once else m.state.repeats)
        if self._clock is not self.main and self.main is not None:
            begins = self._begins(self.main.layer)
            if begins is not None and begins <= self.mixer.frames_rendered:
                self._clock = self.main
        if self._unresolved:
            keep = []
            for r in self._unresolved:
                seen = self.mixer.seen_ns(r.serial)
                if seen is None:
                    keep.append(r)
                else:
                    r.audible_ns = seen
                    r.begins_frame = self.mixer.start_frame(r.serial)
                    self.responses.append(r)
            self._unresolved = keep

    def _begins(self, layer: Layer) -> int | None:
        base = self.mixer.start_frame(layer.base)
        return None if base is None else base + layer.start

    def position(self) -> tuple[State, float] | None:
        """(state of the grid, beats since the grid's anchor) at the mixer's frame."""
        clock = self._clock
        if clock is None or clock.anchor is None:
            return None
        beat_frames = _beat_frames(clock.state, self.sample_rate)
        return clock.state, (self.mixer.frames_rendered - clock.anchor) / beat_frames

    def _boundary(self, exit_: str) -> int | None:
        """The absolute frame of the next exit point, at least two blocks ahead."""
        clock = self._clock
        if exit_ == "immediate" or clock is None or clock.anchor is None:
            return None
        earliest = self.mixer.frames_rendered + 2 * self.block_frames
        if exit_ == "loop_end":
            step = clock.clip.frames
        else:
            step = _beat_frames(clock.state, self.sample_rate)
            if exit_ == "next_bar":
                step *= clock.state.meter.beats_per_bar
        count = math.ceil((earliest - clock.anchor) / step)
        return clock.anchor + round(count * step)

    # -- transitions ------------------------------------------------------------------

    def _transition(self, rule: Transition, received_ns: int) -> None:
        clip = self.pool.take(rule.target)
        if clip is None:
            # The target's pool is empty (a fresh edit): go as soon as its loop is ready.
            self.counters.waited_for_loop += 1
            self._waiting = (rule, received_ns)
            return
        source = self.state
        if source != rule.target:
            self.previous_state = source
        self.state = rule.target
        target = self.graph.states[rule.target]
        clock_state = self._clock.state if self._clock else target
        fade = rule.fade.frames(clock_state.tempo_bpm, clock_state.meter, self.sample_rate)
        curve = CURVES[rule.curve]
        at = self._boundary(rule.exit)
        serial = self._next_serial()
        if at is None:
            base, offset = serial, 0
        else:
            base, offset = 0, at
        anchor = offset
        if rule.entry != "start" and self._clock is not None and self._clock.anchor is not None:
            # Same position / same beat need absolute frames: switch two blocks ahead.
            if at is None:
                base, offset = 0, self.mixer.frames_rendered + 2 * self.block_frames
            old = self._clock
            into = offset - old.anchor
            if rule.entry == "same_position":
                position = into % clip.frames
            else:
                old_beat = _beat_frames(old.state, self.sample_rate)
                new_beat = _beat_frames(target, self.sample_rate)
                position = round((into % old_beat) / old_beat * new_beat)
            anchor = offset - position
        layers = self._fade_out_all(base, offset, fade, curve)
        incoming = Layer(clip.mix, base=base, anchor=anchor, start=offset, fade_base=base,
                         fade_start=offset, fade_frames=fade, gain_from=0.0, gain_to=1.0,
                         curve=curve, tag=clip.loop.loop_id)  # fmt: skip
        layers.append(incoming)
        self.main = Main(target, clip, incoming)
        self._publish(serial, layers)
        self.counters.transitions += 1
        entry = {"from": source, "to": rule.target, "on": rule.event, "exit": rule.exit,
                 "entry": rule.entry, "fade_frames": fade}  # fmt: skip
        rec = self.timeline.add("transition", entry, serial=base, offset=offset)
        if base == 0:
            rec.frame = offset
        entry["end_offset"] = fade
        self._record_loop(clip, base, offset)
        now = self.mixer.frames_rendered
        response = Response(rule.event, received_ns, self.clock_ns(), serial,
                            0 if at is None else max(0, at - now), applied_frame=now)
        self._unresolved.append(response)
        self._notify("/segue/state", self.state)
        self._notify("/segue/transition", "begin", source, rule.target, rule.exit)

    def _fade_out_all(self, base: int, offset: int, fade: int, curve: int) -> list[Layer]:
        """Every current layer fades to silence from (base, offset) over `fade` frames."""
        estimate = self.mixer.frames_rendered if base else offset
        kept = []
        for layer in self._layers:
            fade_base_start = self.mixer.start_frame(layer.fade_base)
            if fade_base_start is None:
                gain = layer.gain_from
            else:
                gain = layer.gain_at(estimate - fade_base_start)
            begins = self._begins(layer)
            if gain <= 0.0 and (begins is None or begins >= estimate or layer.gain_to == 0.0):
                continue  # silent now and never heard again
            kept.append(replace(layer, fade_base=base, fade_start=offset, fade_frames=fade,
                                gain_from=gain, gain_to=0.0, curve=curve))  # fmt: skip
        return kept

    def _swap(self, clip: Clip, at: int) -> None:
        """A fresh loop for the same state, seamless at the loop boundary `at`."""
        fade = round(SWAP_FADE_SECONDS * self.sample_rate)
        layers = self._fade_out_all(0, at, fade, EQUAL_POWER)
        incoming = Layer(clip.mix, base=0, anchor=at, start=at, fade_base=0, fade_start=at,
                         fade_frames=fade, gain_from=0.0, gain_to=1.0, tag=clip.loop.loop_id)
        layers.append(incoming)
        state = self.main.state
        self.main = Main(state, clip, incoming, anchor=at,
                         swap_at=at + clip.frames * (1 if state.once else state.repeats))
        serial = self._next_serial()
        self._publish(serial, layers)
        rec = self._record_loop(clip, 0, at)
        rec.frame = at

    def _replace_main(self, state_name: str, fade, reason: str) -> None:
        rule = Transition(state_name, reason, state_name, fade=fade)
        self._transition(rule, self.clock_ns())

    # -- plumbing -------------------------------------------------------------------------

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def _publish(self, serial: int, layers: list[Layer]) -> None:
        self._layers = layers
        self.mixer.publish(MixPlan(serial, tuple(layers)))

    def _record_loop(self, clip: Clip, base: int, offset: int):
        self.counters.loops_played += 1
        loop = clip.loop
        return self.timeline.add(
            "loop",
            {"loop": loop.loop_id, "state": loop.spec.state, "generator": loop.generator,
             "frames": clip.frames, "lufs": round(clip.loudness_lufs, 2)},
            serial=base, offset=offset,
        )  # fmt: skip

    def _notify(self, address: str, *args) -> None:
        self.outbox.append((address, args, self.mixer.frames_rendered))

    def status(self) -> dict:
        pos = self.position()
        bar = beat = None
        tempo = self.graph.states[self.state].tempo_bpm if self.state in self.graph.states else None
        if pos is not None:
            grid_state, beats = pos
            per_bar = grid_state.meter.beats_per_bar
            bar, beat = int(beats // per_bar) + 1, int(beats % per_bar) + 1
            tempo = grid_state.tempo_bpm
        main = self.main
        return {
            "state": self.state,
            "tempo": tempo,
            "bar": bar,
            "beat": beat,
            "frame": self.mixer.frames_rendered,
            "loop": main.clip.loop.loop_id if main else None,
            "generator": main.clip.loop.generator if main else None,
            "pools": self.pool.sizes(),
            "params": dict(self.params),
            "counters": vars(self.counters) | {"mixer_" + k: v for k, v in
                                               vars(self.mixer.counters).items()},
            "last_error": self.last_error,
            "graph": self.graph.path,
        }  # fmt: skip


def _seconds(value: float):
    from engine.graph import Duration

    return Duration(value, "seconds")


def _beat_frames(state: State, sample_rate: int) -> float:
    return 60.0 / state.tempo_bpm * 4 / state.meter.beat_unit * sample_rate
