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

import logging
import time
from dataclasses import dataclass, field

from engine.audio.mixer import EQUAL_POWER, Layer, Mixer
from engine.control import addresses, clock, layers, policy
from engine.control import commands as cmd
from engine.control.bridges import Bridges
from engine.control.clock import Main
from engine.control.layers import SWAP_FADE_SECONDS
from engine.control.parts import Parts
from engine.control.policy import Pending
from engine.control.report import Counters, status
from engine.control.staging import Response, Stage
from engine.control.stingers import Stingers
from engine.control.timeline import Timeline
from engine.making.pool import LoopPool
from engine.score.graph import Graph, GraphError, State, Transition
from engine.score.load import load_graph
from engine.score.music import SAMPLE_RATE, Clip

log = logging.getLogger("segue.conductor")

SCHEDULE_AHEAD_SECONDS = 0.3  # how early a loop swap is published


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

    def __post_init__(self) -> None:
        if self.timeline is None:
            self.timeline = Timeline(self.sample_rate)
        self.stage = Stage(self.mixer, self.timeline, self.sample_rate)
        self.main: Main | None = None
        self.clock: Main | None = None  # the main that sets the bar grid right now
        self.pending: Pending | None = None
        self._refresh_current = False
        self._waiting: tuple[Transition, int] | None = None  # a rule whose loop is not ready
        self._armed: dict[Transition, bool] = {}
        self.stingers = Stingers(
            self.stage, self.pool, self.counters, self.block_frames, self.sample_rate
        )
        self.bridges = Bridges(self.pool, self.counters)
        self.parts = Parts()
        self.params = {p.name: p.default for p in self.graph.parameters.values()}
        # command type -> the method that applies it, from the OSC address table
        self._handlers = {
            row.command: getattr(self, row.handler) for row in addresses.ROWS if row.handler
        }

    muted = property(lambda self: self.parts.muted, doc="parts muted from the live view")
    solo = property(lambda self: self.parts.solo, doc='the part heard alone ("": none)')

    @property
    def outbox(self):
        """(address, args, frame) for subscribers, oldest first."""
        return self.stage.outbox

    @property
    def responses(self):
        """How fast events were answered, once the mixer has played the answer."""
        return self.stage.responses

    # -- start ----------------------------------------------------------------------

    def start(self) -> None:
        """Begin playing the initial state (the pool must be filled for it)."""
        self._adopt(self.graph)
        self.pool.wait_ready([self.graph.initial])
        self.state = self.graph.initial
        clip = self.pool.take(self.state)
        serial = self.stage.next_serial()
        state = self.graph.states[self.state]
        layer = self._loop_layer(clip, state, serial, anchor=0, start=0)
        self.main = Main(state, clip, layer)
        self.clock = self.main
        self.stage.publish(serial, [layer])
        self._record_loop(clip, serial, 0)
        self._rearm_conditions()
        self.stage.notify("/segue/state", self.state)

    def _adopt(self, graph: Graph) -> set[str]:
        changed = self.pool.set_graph(graph, first=self.state or None)
        self.stingers.request(graph, self.graph, changed)
        return changed

    # -- commands ---------------------------------------------------------------------

    def handle(self, command: cmd.Command) -> object | None:
        """Apply one command now; returns a reply payload (errors, Status), else None."""
        self.counters.commands += 1
        handler = self._handlers.get(type(command))
        if handler is None:
            return None
        return handler(command, command.received_ns or self.clock_ns())

    def on_event(self, command: cmd.Event, received: int) -> dict | None:
        self.counters.events += 1
        self.stage.record("event", {"event": command.name})
        rule = self.graph.transition_for(self.state, command.name)
        if rule is None:
            if command.name not in self.graph.events:
                self.counters.unknown_events += 1
                return {"ignored": f"unknown event {command.name!r}"}
            return {"ignored": f"no rule for {command.name!r} in state {self.state!r}"}
        self._transition(rule, received)
        return None

    def on_state(self, command: cmd.SetState, received: int) -> dict | None:
        self.stage.record("state", {"state": command.name})
        if command.name not in self.graph.states:
            self.counters.unknown_states += 1
            return {"error": f"unknown state {command.name!r}"}
        if command.name != self.state:
            self._transition(policy.forced(self.graph, self.state, command.name), received)
        return None

    def on_param(self, command: cmd.SetParam, received: int) -> dict | None:
        self.stage.record("param", {"param": command.name, "value": command.value})
        spec = self.graph.parameters.get(command.name)
        if spec is None:
            self.counters.unknown_params += 1
            return {"error": f"unknown parameter {command.name!r}"}
        self.params[command.name] = min(max(command.value, spec.low), spec.high)
        # Stems follow at the next tick: a game may send a parameter every frame, and
        # one new plan per tick is plenty (the ramp smooths between them anyway).
        self.parts.moving(spec.smoothing_seconds)
        rule = policy.fires(self.graph, self.state, command.name, self.params, self._armed)
        if rule is not None:
            self.stage.record("event", {"event": rule.event})
            self._transition(rule, received)
            self._rearm_conditions()
        return None

    def on_stinger(self, command: cmd.PlayStinger, _received: int) -> dict:
        self.stage.record("stinger_request", {"stinger": command.name})
        if command.name not in self.graph.stingers:
            self.counters.unknown_stingers += 1
            return {"error": f"unknown stinger {command.name!r}"}
        return self.play_stinger(command.name)

    def on_mute(self, command: cmd.MutePart | cmd.SoloPart, _received: int = 0) -> dict | None:
        return self.parts.mute(command)

    def on_status(self, _command: cmd.Status, _received: int) -> dict:
        return self.status()

    def on_reload(self, _command: cmd.Reload, _received: int) -> None:
        self.reload()

    def reload(self, graph: Graph | None = None) -> bool:
        """Adopt a new graph (or re-read the file). A broken one keeps the old graph."""
        if graph is None:
            try:
                graph = load_graph(self.graph_path or self.graph.path)
            except GraphError as exc:
                self.counters.reload_errors += 1
                self.last_error = str(exc)
                self.stage.record("error", {"error": str(exc)})
                log.error("graph not reloaded, the old one keeps playing: %s", exc)
                self.stage.notify("/segue/error", str(exc))
                return False
        changed = self._adopt(graph)
        self.graph = graph
        self.counters.reloads += 1
        self.last_error = ""
        self.params = {
            p.name: self.params.get(p.name, p.default) for p in graph.parameters.values()
        }
        self._armed = {}
        self.stage.record("reload", {"changed": sorted(changed)})
        log.info("graph reloaded; states with new music: %s", ", ".join(sorted(changed)) or "none")
        self.stage.notify("/segue/reload", ",".join(sorted(changed)))
        if self.state not in graph.states:
            self.pending = None
            self._transition(policy.gone(self.state, graph.initial), self.clock_ns())
        elif self.state in changed:
            self._refresh_current = True
        self._rearm_conditions()
        return True

    def _rearm_conditions(self) -> None:
        self._armed.update(policy.armed(self.graph, self.state, self.params))

    # -- parameters -------------------------------------------------------------------

    def _loop_layer(self, clip: Clip, state: State, base: int, **where) -> Layer:
        """`clip` looping in `state`, its stems at the parameters' gains."""
        targets = self.parts.targets(state, clip, self.params)
        return layers.loop_layer(clip, targets, base, **where)

    # -- the clock ----------------------------------------------------------------------

    def tick(self) -> None:
        """Advance control-side work: pick up loops, resolve times, schedule swaps."""
        self.pool.poll()
        self._resolve()
        now = self.stage.now
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
        for name in self.stingers.take_waiting():
            self.play_stinger(name, retry=True)
        if self._refresh_current and self.pool.ready.get(self.state) and self.pending is None:
            self._refresh_current = False
            self._transition(policy.refresh(self.state), self.clock_ns())
        self.parts.follow(self.stage, self.main, self.params, self.sample_rate)
        self._announce(now)
        self.bridges.prefetch(self.graph, self.main)
        self._prune(now)
        main = self.main
        if main is None or main.swap_at is None or self.pending is not None:
            return
        if now + round(SCHEDULE_AHEAD_SECONDS * self.sample_rate) < main.swap_at:
            return
        if main.state.once:
            rule = policy.once_over(main.state, self.previous_state, self.graph)
            if rule is not None:
                self._transition(rule, self.clock_ns())
                return
        clip = self.pool.take(main.state.name)
        if clip is None:
            self.counters.loop_repeats_no_fresh += 1
            main.swap_at += main.clip.frames
            return
        self._swap(clip, main.swap_at)

    def _resolve(self) -> None:
        """Learn the frames the mixer started plans at: anchors, the grid, responses."""
        self.stage.resolve()
        start = self.stage.start_frame
        for m in (self.main, self.clock):
            if m is not None and m.anchor is None:
                base = start(m.layer.base)
                if base is not None:
                    m.place(base + m.layer.anchor)
        if self.clock is not self.main and self.main is not None:
            begins = layers.begins(self.main.layer, start)
            if begins is not None and begins <= self.stage.now + self.block_frames:
                self.clock = self.main

    def position(self) -> tuple[State, float] | None:
        """(state of the grid, beats since the grid's anchor) at the mixer's frame."""
        return clock.position(self.clock, self.stage.now, self.sample_rate)

    # -- transitions ------------------------------------------------------------------

    def _transition(self, rule: Transition, received_ns: int) -> None:
        if rule.target is None:  # a rule that only plays a stinger
            if rule.stinger:
                self.play_stinger(rule.stinger)
            return
        if not self._may_go(rule, received_ns):
            return
        clip = self.pool.take(rule.target, spare=True)
        if rule.target in self.pool.stale:
            self._refresh_current = True  # edited music: swapped in once it is made
        if clip is None:
            # The target's pool is empty (a fresh edit): go as soon as its loop is ready.
            self.counters.waited_for_loop += 1
            self._waiting = (rule, received_ns)
            return
        stage = self.stage
        source = self.state
        layers_before, main_before, clock_before = list(stage.layers), self.main, self.clock
        if source != rule.target:
            self.previous_state = source
        target = self.graph.states[rule.target]
        serial = stage.next_serial()
        now = stage.now
        # the next exit point at least two blocks ahead (time to publish the plan)
        at = clock.grid_point(rule.exit, now + 2 * self.block_frames, self.clock, self.sample_rate)
        bridge = self.bridges.take(self.main, rule, self.state) if rule.bridge_bars else None
        where = layers.Where(now, self.block_frames, self.sample_rate, stage.start_frame)
        targets = self.parts.targets(target, clip, self.params)
        plan = layers.change(
            rule,
            target,
            clip,
            targets,
            bridge,
            stage.layers,
            serial=serial,
            exit_at=at,
            grid=self.clock,
            where=where,
        )
        base, offset = plan.base, plan.offset
        self.state = rule.target
        self.main = Main(target, clip, plan.incoming)
        if base == 0:
            self.main.place(plan.anchor)
        stage.publish(serial, plan.layers)
        self.counters.transitions += 1
        records = []  # timeline entries of this change (marked if a later rule replaces it)
        if bridge is not None:
            self.counters.bridges += 1
            loop = bridge.loop
            data = {"from": source, "to": rule.target, "loop": loop.loop_id,
                    "generator": loop.generator, "frames": bridge.frames}  # fmt: skip
            records.append(stage.record("bridge", data, serial=base, offset=offset))
        data = {"from": source, "to": rule.target, "on": rule.event, "exit": rule.exit,
                "entry": rule.entry, "fade_out_frames": plan.fade_out,
                "fade_in_frames": plan.fade_in, "bridge": bridge is not None}  # fmt: skip
        records.append(stage.record("transition", data, serial=base, offset=offset))
        records.append(self._record_loop(clip, base, plan.entry_at))
        if at is not None:
            self.pending = Pending(
                rule, at, source, layers_before, main_before, clock_before, records=records
            )
        stage.ends.append((stage.absolute(base, plan.end), source, rule.target))
        if rule.stinger:
            self.play_stinger(
                rule.stinger, at_frame=stage.absolute(base, offset), state=rule.target
            )
        self._respond(rule, received_ns, serial, now, at, plan.ducked)
        stage.notify("/segue/state", self.state)
        stage.notify(
            "/segue/transition", "begin", source, rule.target, at=stage.absolute(base, offset)
        )

    def _may_go(self, rule: Transition, received_ns: int) -> bool:
        """A transition while another waits for its exit point: by the waiting rule's policy,
        ignored, queued behind it, or replacing it (undone back to what played before)."""
        pending = self.pending
        decision = policy.while_pending(pending, self.stage.now)
        if decision == "ignore":
            self.counters.ignored_while_pending += 1
            return False
        if decision == "queue":
            self.counters.queued_while_pending += 1
            pending.queued.append((rule, received_ns))
            return False
        if decision == "replace":
            self.counters.replaced_while_pending += 1
            for entry in pending.records:
                entry.data["cancelled"] = True
            self.stage.layers = pending.layers_before
            self.main, self.clock = pending.main_before, pending.clock_before
            self.state = pending.state_before
            self.pending = None
        return True

    def _respond(
        self, rule: Transition, received: int, serial: int, now: int, at: int | None, ducked: bool
    ) -> None:
        """Record how fast the game hears an answer (a duck or stinger at once: two stages)."""
        musical = 0 if at is None else max(0, at - now)
        audible = 0 if ducked else musical
        if rule.respond_stinger and at is not None:
            played = self.play_stinger(rule.respond_stinger, quantize="none")
            if "scheduled" in played:  # not cooling down, and rendered
                audible = 0
        response = Response(rule.event, received, self.clock_ns(), serial, musical, now, audible)
        data = {"event": rule.event, "two_stage": audible < musical, "musical_frames": musical,
                "audible_frames": audible}  # fmt: skip
        self.stage.record("response", data, frame=now)
        self.stage.respond(response)

    def _swap(self, clip: Clip, at: int) -> None:
        """A fresh loop for the same state, seamless at the loop boundary `at`."""
        stage = self.stage
        fade = round(SWAP_FADE_SECONDS * self.sample_rate)
        estimate = stage.absolute(0, at)
        out = layers.fade_out_all(
            stage.layers, 0, at, fade, EQUAL_POWER, at=estimate, start_frame=stage.start_frame
        )
        state = self.main.state
        fade_in = {"fade_base": 0, "fade_start": at, "fade_frames": fade, "gain_from": 0.0}
        incoming = self._loop_layer(clip, state, 0, anchor=at, start=at, **fade_in)
        out.append(incoming)
        self.main = Main(state, clip, incoming)
        self.main.place(at)
        self.stage.publish(self.stage.next_serial(), out)
        self._record_loop(clip, 0, at)

    def play_stinger(self, name: str, **where) -> dict:
        """Schedule a stinger on the grid, in the key of the state it lands in."""
        return self.stingers.play(
            self.graph, name, current=self.state, grid=self.clock, pending=self.pending, **where
        )

    # -- callbacks ------------------------------------------------------------------------

    def _announce(self, now: int) -> None:
        """Beat and bar callbacks just ahead of the audio; transition ends."""
        horizon = now + clock.BEAT_LOOKAHEAD_BLOCKS * self.block_frames
        beats, bars = self.stage.announce(self.clock, now, horizon)
        self.counters.beats += beats
        self.counters.bars += bars

    # -- plumbing -------------------------------------------------------------------------

    def _prune(self, now: int) -> None:
        """Drop finished layers (the audio thread skips them; this frees their buffers)."""
        keep = [x for x in self.stage.layers if not layers.finished(x, self.stage.start_frame, now)]
        if len(keep) != len(self.stage.layers) and self.pending is None:
            self.stage.publish(self.stage.next_serial(), keep)

    def _record_loop(self, clip: Clip, base: int, offset: int):
        self.counters.loops_played += 1
        loop = clip.loop
        data = {"loop": loop.loop_id, "state": loop.spec.state, "generator": loop.generator,
                "frames": clip.frames, "lufs": round(clip.loudness_lufs, 2)}  # fmt: skip
        return self.stage.record("loop", data, serial=base, offset=offset)

    def status(self) -> dict:
        return status(self)
