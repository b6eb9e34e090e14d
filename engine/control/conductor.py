"""The control side: applies commands, keeps the musical clock, publishes mix plans.

Single-threaded and clock-agnostic: the live daemon calls `handle` and `tick` from its
control thread; the offline renderer calls them between blocks with a virtual clock.
Both run this exact code, and every musical decision is made in sample frames, so a
render previews exactly what plays live.

Vocabulary:
- the *main* loop carries the current state and sets the bar grid (the clock);
- a transition fades every layer out at its *exit point* (now, next beat, next bar,
  loop end or a cue) and the destination in — through a generated *bridge* if asked;
- while a quantized exit waits, the game already hears an answer (a duck, a stinger):
  that is time-to-audible; the change itself is time-to-musical;
- stingers are one-shot layers, quantized to the grid, in the key of the state they
  land in; stems of the main loop follow parameters through the state's layer curves.
"""

from __future__ import annotations

import collections
import logging
import math
import time
import zlib
from dataclasses import dataclass, field, replace

from engine.audio.mixer import CURVES, EQUAL_POWER, Layer, Mixer, MixPlan
from engine.control import commands as cmd
from engine.control.timeline import Timeline
from engine.making.pool import LoopPool
from engine.score.graph import Duration, Graph, GraphError, State, Transition, load_graph, loop_spec
from engine.score.music import PARTS, SAMPLE_RATE, Clip

log = logging.getLogger("segue.conductor")

SWAP_FADE_SECONDS = 0.01  # loop-to-loop seam inside a state, and bridge seams: click-free
REFRESH_FADE_SECONDS = 0.3  # a live edit replaces the current loop this fast
FORCE_FADE_SECONDS = 0.5  # /segue/state with no matching rule
DUCK_SECONDS = 0.03  # how fast the first-stage duck comes in
SCHEDULE_AHEAD_SECONDS = 0.3  # how early a loop swap is published
BEAT_LOOKAHEAD_BLOCKS = 2  # beat callbacks are sent this far ahead of the audio
MUTE_FADE_SECONDS = 0.05  # a part muted or soloed from the live view: quick, click-free


def _seconds(value: float) -> Duration:
    return Duration(value, "seconds")


@dataclass
class Counters:
    commands: int = 0
    events: int = 0
    unknown_events: int = 0
    unknown_states: int = 0
    unknown_params: int = 0
    unknown_stingers: int = 0
    transitions: int = 0
    replaced_while_pending: int = 0
    queued_while_pending: int = 0
    ignored_while_pending: int = 0
    loops_played: int = 0
    loop_repeats_no_fresh: int = 0
    reloads: int = 0
    reload_errors: int = 0
    waited_for_loop: int = 0
    stingers: int = 0
    stingers_cooldown: int = 0
    stingers_moved_to_next_state: int = 0
    stingers_waited: int = 0
    bridges: int = 0
    bridges_missed: int = 0
    beats: int = 0
    bars: int = 0


@dataclass
class Main:
    """The loop that carries the state (and the musical clock)."""

    state: State
    clip: Clip
    layer: Layer
    anchor: int | None = None  # absolute frame of audio[0], once known
    swap_at: int | None = None  # absolute frame of the next fresh loop (or one-shot exit)


@dataclass
class Pending:
    """A transition waiting for its exit point."""

    rule: Transition
    switch: int  # absolute frame
    state_before: str
    layers_before: list[Layer]
    main_before: Main | None
    clock_before: Main | None
    queued: list[tuple[Transition, int]] = field(default_factory=list)
    records: list = field(default_factory=list)  # its timeline entries, marked if cancelled


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
        out = {"event": self.event, "ack_ms": (self.applied_ns - self.received_ns) / 1e6,
               "received_ns": self.received_ns, "mixed_ns": self.audible_ns}  # fmt: skip
        if self.begins_frame is not None:
            out["frames_after_apply"] = self.begins_frame - self.applied_frame
        if self.audible_ns is not None:
            out["audible_ms"] = (self.audible_ns - self.received_ns) / 1e6
            out["musical_ms"] = out["audible_ms"] + (self.offset - self.audible_offset) / (
                sample_rate / 1000
            )
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
    outbox: collections.deque = field(default_factory=lambda: collections.deque(maxlen=4096))
    responses: collections.deque = field(default_factory=lambda: collections.deque(maxlen=4096))

    def __post_init__(self) -> None:
        self._serial = 0
        self._layers: list[Layer] = []
        self.main: Main | None = None
        self._clock: Main | None = None  # the main that sets the bar grid right now
        self.pending: Pending | None = None
        self._refresh_current = False
        self._waiting: tuple[Transition, int] | None = None  # a rule whose loop is not ready
        self._unresolved: list[Response] = []
        self._armed: dict[Transition, bool] = {}
        self._stinger_last: dict[str, int] = {}
        self._stingers_waiting: list[tuple[str, int]] = []
        self._ends: list[tuple[int, str, str]] = []  # transition ends to announce
        self._beat_done = -1  # last frame a beat callback was sent for
        self._bar_number = 0
        self._params_moved = 0.0  # smoothing seconds of the parameters changed since a tick
        self.muted: set[str] = set()
        self.solo = ""  # a part heard alone ("" none)
        self._mixing_parts = False  # once a part was muted, loops play as stems (gains apply)
        self.params = {p.name: p.default for p in self.graph.parameters.values()}
        if self.timeline is None:
            self.timeline = Timeline(self.sample_rate)

    # -- start ----------------------------------------------------------------------

    def start(self) -> None:
        """Begin playing the initial state (the pool must be filled for it)."""
        self._adopt(self.graph)
        self.pool.wait_ready([self.graph.initial])
        self.state = self.graph.initial
        clip = self.pool.take(self.state)
        serial = self._next_serial()
        state = self.graph.states[self.state]
        layer = self._loop_layer(clip, state, serial, anchor=0, start=0)
        self.main = Main(state, clip, layer)
        self._clock = self.main
        self._publish(serial, [layer])
        self._record_loop(clip, serial, 0)
        self._rearm_conditions()
        self._notify("/segue/state", self.state)

    def _adopt(self, graph: Graph) -> set[str]:
        changed = self.pool.set_graph(graph, first=self.state or None)
        names = set(graph.stingers)
        self.pool.forget_extras(lambda key: key[0] != "stinger" or (
            key[1] in names and key[2] in graph.states and key[2] not in changed
            and graph.stingers[key[1]] == self.graph.stingers.get(key[1])))  # fmt: skip
        for stinger in graph.stingers.values():
            for state in graph.states:
                self.pool.request_extra(("stinger", stinger.name, state), "make_stinger", stinger,
                                        loop_spec(graph, state, 0),
                                        f"stinger-{stinger.name}-{state}")  # fmt: skip
        return changed

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
                # Forced: now, with the fades of the rule between the two states if any.
                rule = next(
                    (
                        r
                        for r in self.graph.transitions
                        if r.target == command.name and r.source == self.state
                    ),
                    None,
                )
                fade_out = rule.fade_out if rule else _seconds(FORCE_FADE_SECONDS)
                fade_in = rule.fade_in if rule else _seconds(FORCE_FADE_SECONDS)
                self._transition(
                    Transition(
                        self.state, "/segue/state", command.name, fade_out=fade_out, fade_in=fade_in
                    ),
                    received,
                )
        elif isinstance(command, cmd.SetParam):
            self.timeline.add("param", {"param": command.name, "value": command.value}, frame=now)
            spec = self.graph.parameters.get(command.name)
            if spec is None:
                self.counters.unknown_params += 1
                return {"error": f"unknown parameter {command.name!r}"}
            self.params[command.name] = min(max(command.value, spec.low), spec.high)
            # Stems follow at the next tick: a game may send a parameter every frame, and
            # one new plan per tick is plenty (the ramp smooths between them anyway).
            self._params_moved = max(self._params_moved, spec.smoothing_seconds)
            self._check_conditions(command.name, received)
        elif isinstance(command, cmd.PlayStinger):
            self.timeline.add("stinger_request", {"stinger": command.name}, frame=now)
            if command.name not in self.graph.stingers:
                self.counters.unknown_stingers += 1
                return {"error": f"unknown stinger {command.name!r}"}
            return self.play_stinger(command.name)
        elif isinstance(command, cmd.MutePart | cmd.SoloPart):
            return self._mute(command)
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
        changed = self._adopt(graph)
        self.graph = graph
        self.counters.reloads += 1
        self.last_error = ""
        self.params = {
            p.name: self.params.get(p.name, p.default) for p in graph.parameters.values()
        }
        self._armed = {}
        self.timeline.add("reload", {"changed": sorted(changed)}, frame=self.mixer.frames_rendered)
        log.info("graph reloaded; states with new music: %s", ", ".join(sorted(changed)) or "none")
        self._notify("/segue/reload", ",".join(sorted(changed)))
        if self.state not in graph.states:
            rule = Transition(self.state, "/segue/reload", graph.initial,
                              fade_out=_seconds(FORCE_FADE_SECONDS),
                              fade_in=_seconds(FORCE_FADE_SECONDS))  # fmt: skip
            self.pending = None
            self._transition(rule, self.clock_ns())
        elif self.state in changed:
            self._refresh_current = True
        self._rearm_conditions()
        return True

    # -- parameters -------------------------------------------------------------------

    def _mute(self, command: cmd.MutePart | cmd.SoloPart) -> dict | None:
        """Mute or solo a part; the stems follow through the parameters' path."""
        if (command.part or isinstance(command, cmd.MutePart)) and command.part not in PARTS:
            return {"error": f"unknown part {command.part!r}; parts are {', '.join(PARTS)}"}
        if isinstance(command, cmd.SoloPart):
            self.solo = command.part
        elif command.muted:
            self.muted.add(command.part)
        else:
            self.muted.discard(command.part)
        self._mixing_parts = True
        self._params_moved = max(self._params_moved, MUTE_FADE_SECONDS)
        return None

    def _part_gain(self, part: str) -> float:
        return 0.0 if part in self.muted or (self.solo and part != self.solo) else 1.0

    def _stem_targets(self, state: State, clip: Clip) -> tuple[float, ...] | None:
        """Stem gains for a state's layer curves at the current parameters (None: all 1)."""
        if not state.layers and not self._mixing_parts:
            return None
        curves = {layer.part: layer for layer in state.layers}
        return tuple((curves[p].gain(self.params.get(curves[p].param, 0.0)) if p in curves
                      else 1.0) * self._part_gain(p) for p in clip.parts)  # fmt: skip

    def _follow_params(self, smoothing_seconds: float) -> None:
        """Move the main loop's stems toward their new gains, smoothly, from the next block."""
        main = self.main
        if main is None or not (main.state.layers or self._mixing_parts):
            return
        target = self._stem_targets(main.state, main.clip)
        serial = self._next_serial()
        current = self._stems_now(main.layer)
        frames = max(1, round(smoothing_seconds * self.sample_rate))
        new = replace(main.layer, stem_from=current, stem_to=target, stem_base=serial,
                      stem_start=0, stem_frames=frames)  # fmt: skip
        self._replace_layer(main.layer, new)
        main.layer = new
        self._publish(serial, self._layers)

    def _stems_now(self, layer: Layer) -> tuple[float, ...]:
        if layer.stem_to is None:
            return tuple(1.0 for _ in range(len(layer.stems)))
        base = self.mixer.start_frame(layer.stem_base)
        if base is None:
            return layer.stem_from
        return layer.stem_gains_at(self.mixer.frames_rendered - base)

    def _rearm_conditions(self) -> None:
        for rule in self.graph.condition_rules(self.state):
            value = self.params.get(rule.condition.param, 0.0)
            self._armed[rule] = not rule.condition.holds(value)

    def _check_conditions(self, param: str, received_ns: int) -> None:
        fire = None
        for rule in self.graph.condition_rules(self.state):
            condition = rule.condition
            if condition.param != param:
                continue
            value = self.params[param]
            armed = self._armed.get(rule, True)
            if armed and condition.holds(value):
                self._armed[rule] = False
                fire = fire or rule  # rules come best first
            elif not armed and condition.rearms(value):
                self._armed[rule] = True
        if fire is not None:
            self.timeline.add("event", {"event": fire.event}, frame=self.mixer.frames_rendered)
            self._transition(fire, received_ns)
            self._rearm_conditions()

    # -- the clock ----------------------------------------------------------------------

    def tick(self) -> None:
        """Advance control-side work: pick up loops, resolve times, schedule swaps."""
        self.pool.poll()
        self._resolve()
        now = self.mixer.frames_rendered
        pending = self.pending
        if pending is not None and now >= pending.switch:
            self.pending = None
            for rule, received in pending.queued:
                self._transition(rule, received)
        if self._waiting is not None:
            rule, received = self._waiting
            if self.pool.ready.get(rule.target):
                self._waiting = None
                self._transition(rule, received)
        if self._stingers_waiting:
            waiting, self._stingers_waiting = self._stingers_waiting, []
            for name, _ in waiting:
                self.play_stinger(name, retry=True)
        if self._refresh_current and self.pool.ready.get(self.state) and self.pending is None:
            self._refresh_current = False
            fade = _seconds(REFRESH_FADE_SECONDS)
            self._transition(Transition(self.state, "refresh", self.state, fade_out=fade,
                                        fade_in=fade), self.clock_ns())  # fmt: skip
        if self._params_moved:
            self._follow_params(self._params_moved)
            self._params_moved = 0.0
        self._announce(now)
        self._prefetch_bridges()
        self._prune(now)
        main = self.main
        if main is None or main.swap_at is None or self.pending is not None:
            return
        ahead = round(SCHEDULE_AHEAD_SECONDS * self.sample_rate)
        if now + ahead < main.swap_at:
            return
        state = main.state
        if state.once:
            target = state.next or self.previous_state or self.graph.initial
            if target in self.graph.states and target != state.name:
                fade = _seconds(SWAP_FADE_SECONDS)
                rule = Transition(state.name, "once", target, exit="loop_end", fade_out=fade,
                                  fade_in=fade)  # fmt: skip
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
            if begins is not None and begins <= self.mixer.frames_rendered + self.block_frames:
                self._clock = self.main
        if self._unresolved:
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

    def _begins(self, layer: Layer) -> int | None:
        base = self.mixer.start_frame(layer.base)
        return None if base is None else base + layer.start

    def _abs(self, base: int, offset: int) -> int:
        """Absolute frame of (base, offset); an unstarted plan starts at the next block."""
        start = self.mixer.start_frame(base)
        return (self.mixer.frames_rendered if start is None else start) + offset

    def position(self) -> tuple[State, float] | None:
        """(state of the grid, beats since the grid's anchor) at the mixer's frame."""
        clock = self._clock
        if clock is None or clock.anchor is None:
            return None
        beat_frames = _beat_frames(clock.state, self.sample_rate)
        return clock.state, (self.mixer.frames_rendered - clock.anchor) / beat_frames

    def _grid_point(self, exit_: str, earliest: int, clock: Main | None = None) -> int | None:
        """The first exit point of kind `exit_` at or after `earliest` (absolute frame)."""
        clock = clock or self._clock
        if exit_ in ("immediate", "none") or clock is None or clock.anchor is None:
            return None
        state = clock.state
        beat = _beat_frames(state, self.sample_rate)
        if exit_ in ("next_beat", "beat"):
            step, phase = beat, 0.0
        elif exit_ in ("next_bar", "bar"):
            step, phase = beat * state.meter.beats_per_bar, 0.0
        elif exit_ == "loop_end":
            step, phase = clock.clip.frames, 0.0
        else:  # a named cue: once per loop, at its beat
            step, phase = clock.clip.frames, (state.cue(exit_) or 0.0) * beat
        count = math.ceil((earliest - clock.anchor - phase) / step)
        return clock.anchor + round(phase + count * step)

    def _boundary(self, exit_: str) -> int | None:
        """The next exit point at least two blocks ahead (time to publish the plan)."""
        return self._grid_point(exit_, self.mixer.frames_rendered + 2 * self.block_frames)

    # -- transitions ------------------------------------------------------------------

    def _transition(self, rule: Transition, received_ns: int) -> None:
        if rule.target is None:  # a rule that only plays a stinger
            if rule.stinger:
                self.play_stinger(rule.stinger)
            return
        pending = self.pending
        if pending is not None and self.mixer.frames_rendered < pending.switch:
            policy = pending.rule.while_pending
            if policy == "ignore":
                self.counters.ignored_while_pending += 1
                return
            if policy == "queue":
                self.counters.queued_while_pending += 1
                pending.queued.append((rule, received_ns))
                return
            # replace: the waiting change never happens; start over from what played before
            self.counters.replaced_while_pending += 1
            for entry in pending.records:
                entry.data["cancelled"] = True
            self._layers = pending.layers_before
            self.main, self._clock = pending.main_before, pending.clock_before
            self.state = pending.state_before
            self.pending = None
        clip = self.pool.take(rule.target, spare=True)
        if rule.target in self.pool.stale:
            self._refresh_current = True  # edited music: swapped in once it is made
        if clip is None:
            # The target's pool is empty (a fresh edit): go as soon as its loop is ready.
            self.counters.waited_for_loop += 1
            self._waiting = (rule, received_ns)
            return
        source = self.state
        layers_before, main_before, clock_before = list(self._layers), self.main, self._clock
        if source != rule.target:
            self.previous_state = source
        target = self.graph.states[rule.target]
        grid = self._clock.state if self._clock else target
        fade_out = rule.fade_out.frames(grid.tempo_bpm, grid.meter, self.sample_rate)
        fade_in = rule.fade_in.frames(target.tempo_bpm, target.meter, self.sample_rate)
        swap = round(SWAP_FADE_SECONDS * self.sample_rate)
        curve = CURVES[rule.curve]
        serial = self._next_serial()
        now = self.mixer.frames_rendered
        at = self._boundary(rule.exit)
        base, offset = (serial, 0) if at is None else (0, at)
        if (
            rule.entry != "start"
            and self._clock is not None
            and self._clock.anchor is not None
            and at is None
        ):
            base, offset = 0, now + 2 * self.block_frames  # entries need absolute frames
        bridge = self._bridge_for(rule) if rule.bridge_bars else None
        records = []  # timeline entries of this change (marked if a later rule replaces it)
        # Everything now playing (but stingers) leaves at the exit point.
        layers = self._fade_out_all(base, offset, fade_out, curve)
        ducked = at is not None and rule.duck_db < 0
        if ducked:
            layers = self._duck(layers, serial, 10.0 ** (rule.duck_db / 20.0))
        entry_at = offset
        if bridge is not None:
            bridge_frames = bridge.frames
            entry_at = offset + bridge_frames
            layers.append(
                _one_shot(
                    bridge,
                    base,
                    offset,
                    entry_at,
                    min(fade_in, bridge_frames),
                    swap,
                    1.0,
                    curve,
                    "bridge:" + bridge.loop.loop_id,
                )
            )
            self.counters.bridges += 1
            bridge_rec = self.timeline.add(
                "bridge", {"from": source, "to": rule.target, "loop": bridge.loop.loop_id,
                           "generator": bridge.loop.generator, "frames": bridge_frames},
                serial=base, offset=offset)  # fmt: skip
            bridge_rec.frame = offset if base == 0 else None
            records.append(bridge_rec)
        anchor = entry_at
        if rule.entry != "start" and clock_before is not None and clock_before.anchor is not None:
            old = clock_before
            into = (offset if base == 0 else now) - old.anchor
            if rule.entry == "same_position":
                position = into % clip.frames
            else:
                old_beat = _beat_frames(old.state, self.sample_rate)
                new_beat = _beat_frames(target, self.sample_rate)
                position = round((into % old_beat) / old_beat * new_beat)
            anchor = entry_at - position
        incoming = self._loop_layer(clip, target, base, anchor=anchor, start=entry_at,
                                    fade_base=base, fade_start=entry_at,
                                    fade_frames=swap if bridge is not None else fade_in,
                                    gain_from=0.0, curve=curve)  # fmt: skip
        layers.append(incoming)
        self.state = rule.target
        self.main = Main(target, clip, incoming)
        if base == 0:
            self.main.anchor = anchor
            self.main.swap_at = anchor + clip.frames * (1 if target.once else target.repeats)
        self._publish(serial, layers)
        self.counters.transitions += 1
        entry = {"from": source, "to": rule.target, "on": rule.event, "exit": rule.exit,
                 "entry": rule.entry, "fade_out_frames": fade_out, "fade_in_frames": fade_in,
                 "bridge": bridge is not None}  # fmt: skip
        rec = self.timeline.add("transition", entry, serial=base, offset=offset)
        if base == 0:
            rec.frame = offset
        loop_rec = self._record_loop(clip, base, entry_at)
        if base == 0:
            loop_rec.frame = entry_at
        if at is not None:
            self.pending = Pending(
                rule,
                at,
                source,
                layers_before,
                main_before,
                clock_before,
                records=[*records, rec, loop_rec],
            )
        end_abs = self._abs(base, entry_at + (swap if bridge is not None else fade_in))
        self._ends.append((end_abs, source, rule.target))
        if rule.stinger:
            self.play_stinger(rule.stinger, at_frame=self._abs(base, offset), state=rule.target)
        musical = 0 if at is None else max(0, at - now)
        audible = 0 if ducked else musical
        if rule.respond_stinger and at is not None:
            played = self.play_stinger(rule.respond_stinger, quantize="none")
            if "scheduled" in played:  # not cooling down, and rendered
                audible = 0
        two_stage = audible < musical
        response = Response(
            rule.event,
            received_ns,
            self.clock_ns(),
            serial,
            musical,
            applied_frame=now,
            audible_offset=audible,
        )
        self.timeline.add("response", {"event": rule.event, "two_stage": two_stage,
                                       "musical_frames": musical,
                                       "audible_frames": response.audible_offset},
                          frame=now)  # fmt: skip
        self._unresolved.append(response)
        self._notify("/segue/state", self.state)
        self._notify("/segue/transition", "begin", source, rule.target, at=self._abs(base, offset))

    def _fade_out_all(self, base: int, offset: int, fade: int, curve: int) -> list[Layer]:
        """Every current layer but stingers fades to silence from (base, offset)."""
        estimate = self._abs(base, offset)
        kept = []
        for layer in self._layers:
            if layer.tag.startswith("stinger:"):
                kept.append(layer)  # a stinger rings out over the change
                continue
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

    def _duck(self, layers: list[Layer], serial: int, factor: float) -> list[Layer]:
        """First-stage answer: outgoing loops dip by `factor` from the next block."""
        frames = round(DUCK_SECONDS * self.sample_rate)
        out = []
        for layer in layers:
            if layer.stems is None or layer.tag.startswith("stinger:"):
                out.append(layer)
                continue
            current = self._stems_now(layer)
            out.append(replace(layer, stem_from=current, stem_to=tuple(g * factor for g in current),
                               stem_base=serial, stem_start=0, stem_frames=frames))  # fmt: skip
        return out

    def _swap(self, clip: Clip, at: int) -> None:
        """A fresh loop for the same state, seamless at the loop boundary `at`."""
        fade = round(SWAP_FADE_SECONDS * self.sample_rate)
        layers = self._fade_out_all(0, at, fade, EQUAL_POWER)
        state = self.main.state
        incoming = self._loop_layer(
            clip,
            state,
            0,
            anchor=at,
            start=at,
            fade_base=0,
            fade_start=at,
            fade_frames=fade,
            gain_from=0.0,
        )
        layers.append(incoming)
        self.main = Main(
            state,
            clip,
            incoming,
            anchor=at,
            swap_at=at + clip.frames * (1 if state.once else state.repeats),
        )
        self._publish(self._next_serial(), layers)
        self._record_loop(clip, 0, at).frame = at

    def _loop_layer(self, clip: Clip, state: State, base: int, *, anchor: int, start: int,
                    **fade) -> Layer:  # fmt: skip
        targets = self._stem_targets(state, clip)
        return Layer(clip.mix, base=base, anchor=anchor, start=start, tag=clip.loop.loop_id,
                     stems=clip.stems, stem_from=targets, stem_to=targets, **fade)  # fmt: skip

    # -- bridges ------------------------------------------------------------------------

    def _bridge_key(self, loop_id: str, rule: Transition) -> tuple:
        return ("bridge", loop_id, rule.target, rule.bridge_bars)

    def _prefetch_bridges(self) -> None:
        """Write bridges out of the playing loop ahead of time, for every rule that wants one."""
        main = self.main
        if main is None:
            return
        loop = main.clip.loop
        for rule in self.graph.transitions:
            if not rule.bridge_bars or rule.target is None:
                continue
            if rule.source not in (main.state.name, "any") or rule.target == main.state.name:
                continue
            key = self._bridge_key(loop.loop_id, rule)
            if key in self.pool.extras or key in self.pool.extras_pending:
                continue
            target = self.graph.states[rule.target]
            seed = zlib.crc32(f"{self.pool.seed}:bridge:{loop.loop_id}:{rule.target}".encode())
            spec = replace(loop_spec(self.graph, rule.target, seed), bars=rule.bridge_bars,
                           state=f"{rule.target}")  # fmt: skip
            beats = main.state.beats_per_loop
            bar = main.state.meter.beats_per_bar * 4 / main.state.meter.beat_unit
            last_bar = tuple(n for n in loop.notes if n.start_beats >= beats - bar)
            self.pool.request_extra(key, "make_bridge", spec,
                                    _shift(last_bar, -(beats - bar)),
                                    f"bridge-{loop.loop_id}-{target.name}")  # fmt: skip

    def _bridge_for(self, rule: Transition) -> Clip | None:
        if self.main is None:
            return None
        clip = self.pool.extra(self._bridge_key(self.main.clip.loop.loop_id, rule))
        if clip is None:
            self.counters.bridges_missed += 1
            log.info("no bridge ready for %s -> %s; changing without one", self.state, rule.target)
        return clip

    # -- stingers -------------------------------------------------------------------------

    def play_stinger(self, name: str, *, at_frame: int | None = None, state: str | None = None,
                     quantize: str | None = None, retry: bool = False) -> dict:  # fmt: skip
        """Schedule a stinger on the grid, in the key of the state it lands in."""
        stinger = self.graph.stingers[name]
        now = self.mixer.frames_rendered
        last = self._stinger_last.get(name)
        cooldown = round(stinger.cooldown_seconds * self.sample_rate)
        if not retry and last is not None and now - last < cooldown:
            self.counters.stingers_cooldown += 1
            self.timeline.add("stinger_cooldown", {"stinger": name}, frame=now)
            self._notify("/segue/stinger", name, "cooldown")
            return {"ignored": f"stinger {name!r} is cooling down"}
        quantize = quantize or stinger.quantize
        state = state or self.state
        clock = self._clock
        pending = self.pending
        moved = False
        earliest = now + 2 * self.block_frames
        if at_frame is None:
            at_frame = self._grid_point(quantize, earliest) if quantize != "none" else None
            if pending is not None and at_frame is not None and at_frame >= pending.switch:
                # It would land after the change: play it in the next state, on its grid.
                self.counters.stingers_moved_to_next_state += 1
                moved = True
                state = pending.rule.target
                beat = _beat_frames(self.graph.states[state], self.sample_rate)
                step = beat * (self.graph.states[state].meter.beats_per_bar
                               if quantize == "bar" else 1)  # fmt: skip
                at_frame = pending.switch + round(math.ceil((at_frame - pending.switch) / step)
                                                  * step)  # fmt: skip
            elif pending is None and clock is not None:
                state = clock.state.name
        clip = self.pool.extra(("stinger", name, state))
        if clip is None:
            # Not rendered yet (a fresh graph): play it as soon as it is, never drop it.
            self.counters.stingers_waited += 1
            self._stingers_waiting.append((name, now))
            return {"queued": f"stinger {name!r} is being rendered"}
        serial = self._next_serial()
        base, offset = (serial, 0) if at_frame is None else (0, at_frame)
        gain = 10.0 ** (stinger.gain_db / 20.0)
        edge = round(SWAP_FADE_SECONDS * self.sample_rate)
        layer = _one_shot(
            clip,
            base,
            offset,
            offset + clip.frames - edge,
            edge,
            edge,
            gain,
            EQUAL_POWER,
            f"stinger:{name}",
        )
        self._publish(serial, [*self._layers, layer])
        self._stinger_last[name] = now
        self.counters.stingers += 1
        rec = self.timeline.add("stinger", {"stinger": name, "state": state,
                                            "tonic": self.graph.states[state].tonic,
                                            "frames": clip.frames, "moved": moved},
                                serial=base, offset=offset)  # fmt: skip
        if base == 0:
            rec.frame = offset
        self._notify("/segue/stinger", name, "scheduled")
        return {"scheduled": name, "frame": None if base else offset}

    # -- callbacks ------------------------------------------------------------------------

    def _announce(self, now: int) -> None:
        """Beat and bar callbacks just ahead of the audio; transition ends."""
        while self._ends and self._ends[0][0] <= now:
            frame, source, target = self._ends.pop(0)
            self._notify("/segue/transition", "end", source, target, at=frame)
        clock = self._clock
        if clock is None or clock.anchor is None:
            return
        beat = _beat_frames(clock.state, self.sample_rate)
        per_bar = clock.state.meter.beats_per_bar
        horizon = now + BEAT_LOOKAHEAD_BLOCKS * self.block_frames
        k = max(0, math.ceil((self._beat_done + 1 - clock.anchor) / beat))
        while True:
            frame = clock.anchor + round(k * beat)
            if frame > horizon:
                break
            if frame > self._beat_done:
                beat_in_bar = k % per_bar + 1
                if beat_in_bar == 1:
                    self._bar_number += 1
                    self.counters.bars += 1
                    self._notify("/segue/bar", self._bar_number, at=frame)
                self.counters.beats += 1
                self._notify("/segue/beat", self._bar_number, beat_in_bar, at=frame)
                self.timeline.add("beat", {"bar": self._bar_number, "beat": beat_in_bar,
                                           "state": clock.state.name}, frame=frame)  # fmt: skip
                self._beat_done = frame
            k += 1

    # -- plumbing -------------------------------------------------------------------------

    def _prune(self, now: int) -> None:
        """Drop finished layers (the audio thread skips them; this frees their buffers)."""
        keep = []
        for layer in self._layers:
            base = self.mixer.start_frame(layer.base)
            fade_base = self.mixer.start_frame(layer.fade_base)
            ended = base is not None and base + layer.end <= now
            faded = (fade_base is not None and layer.gain_to == 0.0
                     and fade_base + layer.fade_start + layer.fade_frames <= now)  # fmt: skip
            if not (ended or faded):
                keep.append(layer)
        if len(keep) != len(self._layers) and self.pending is None:
            self._publish(self._next_serial(), keep)

    def _replace_layer(self, old: Layer, new: Layer) -> None:
        self._layers = [new if layer is old else layer for layer in self._layers]

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

    def _notify(self, address: str, *args, at: int | None = None) -> None:
        """Queue a message for subscribers; `at` is the frame it refers to (for a timetag)."""
        self.outbox.append((address, args, self.mixer.frames_rendered if at is None else at))

    def status(self) -> dict:
        pos = self.position()
        bar = beat = next_beat_ms = next_bar_ms = None
        tempo = self.graph.states[self.state].tempo_bpm if self.state in self.graph.states else None
        if pos is not None:
            grid_state, beats = pos
            per_bar = grid_state.meter.beats_per_bar
            bar, beat = int(beats // per_bar) + 1, int(beats % per_bar) + 1
            tempo = grid_state.tempo_bpm
            beat_ms = _beat_frames(grid_state, self.sample_rate) / self.sample_rate * 1000
            next_beat_ms = round((math.ceil(beats) - beats) * beat_ms, 2)
            next_bar_ms = round((math.ceil(beats / per_bar) * per_bar - beats) * beat_ms, 2)
        main = self.main
        pending = self.pending
        return {
            "state": self.state,
            "tempo": tempo,
            "bar": bar,
            "beat": beat,
            "next_beat_ms": next_beat_ms,
            "next_bar_ms": next_bar_ms,
            "bar_count": self._bar_number,
            "grid_anchor_frame": None if self._clock is None else self._clock.anchor,
            "frame": self.mixer.frames_rendered,
            "loop": main.clip.loop.loop_id if main else None,
            "generator": main.clip.loop.generator if main else None,
            "pending": None if pending is None else {
                "to": pending.rule.target, "exit": pending.rule.exit,
                "in_ms": round((pending.switch - self.mixer.frames_rendered)
                               / self.sample_rate * 1000, 2)},
            "pools": self.pool.sizes(),
            "params": dict(self.params),
            "counters": vars(self.counters) | {"mixer_" + k: v for k, v in
                                               vars(self.mixer.counters).items()},
            "last_error": self.last_error,
            "muted": sorted(self.muted),
            "solo": self.solo,
            "graph": self.graph.path,
        }  # fmt: skip


def _one_shot(
    clip: Clip,
    base: int,
    start: int,
    stop: int,
    fade_in: int,
    fade_out: int,
    gain: float,
    curve: int,
    tag: str,
) -> Layer:
    """A clip played once from `start`: faded in there, and out over `fade_out` frames from
    `stop` (through its stems' ramp, since the layer's own fade is the fade-in)."""
    ones = tuple(1.0 for _ in clip.parts)
    return Layer(clip.mix, base=base, anchor=start, start=start, end=stop + fade_out,
                 fade_base=base, fade_start=start, fade_frames=fade_in, gain_from=0.0,
                 gain_to=gain, curve=curve, tag=tag, stems=clip.stems, stem_from=ones,
                 stem_to=tuple(0.0 for _ in clip.parts), stem_base=base, stem_start=stop,
                 stem_frames=fade_out)  # fmt: skip


def _beat_frames(state: State, sample_rate: int) -> float:
    return 60.0 / state.tempo_bpm * 4 / state.meter.beat_unit * sample_rate


def _shift(notes, beats: float):
    return tuple(replace(n, start_beats=n.start_beats + beats) for n in notes)
