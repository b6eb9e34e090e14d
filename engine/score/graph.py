"""The state graph: YAML → typed, validated, frozen objects.

Validation happens here, once. Every error names file:line:column and what was
expected; the rest of the engine trusts a `Graph`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.score import gm, graph_spec, yamlmarks
from engine.score.graph_spec import CURVES, ENTRIES, EXITS
from engine.score.kinds import RESERVED_CUE_NAMES, Curve, Entry, Exit, Quantize, WhilePending
from engine.score.music import (
    DENSITIES,
    MODES,
    MOODS,
    PARTS,
    PITCH_NAMES,
    Instrument,
    LoopSpec,
    Meter,
    Note,
    Sends,
)
from engine.score.units import Duration, Unit, quarters_per_bar
from engine.score.yamlmarks import Mark, Marked, MarkedList

ANY = "any"

_TONICS = {name: i for i, name in enumerate(PITCH_NAMES)} | {
    "Db": 1, "D#": 3, "Gb": 6, "G#": 8, "A#": 10, "Cb": 11, "E#": 5, "Fb": 4, "B#": 0,
}  # fmt: skip


class GraphError(ValueError):
    """A mistake in a graph file; str() is `file:line:column: message`."""

    def __init__(self, mark: Mark, message: str) -> None:
        super().__init__(f"{mark}: {message}")
        self.mark = mark
        self.message = message


@dataclass(frozen=True, slots=True)
class Layering:
    """A stem's gain as a piecewise-linear curve of a parameter (vertical layering)."""

    part: str
    param: str
    points: tuple[tuple[float, float], ...]  # (parameter value, gain 0..1), x increasing

    def gain(self, value: float) -> float:
        pts = self.points
        if value <= pts[0][0]:
            return pts[0][1]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
            if value <= x1:
                return y0 + (y1 - y0) * (value - x0) / (x1 - x0)
        return pts[-1][1]


@dataclass(frozen=True, slots=True, kw_only=True)
class State:
    name: str
    mood: str
    mode: str
    tonic: int
    tempo_bpm: float
    meter: Meter
    bars: int
    instruments: tuple[tuple[str, Instrument], ...]
    density: str
    repeats: int  # how many times a loop plays before a fresh one
    once: bool  # one-shot: plays one loop, then goes to `next`
    next: str | None
    motif: tuple[Note, ...] = ()
    cues: tuple[tuple[str, float], ...] = ()  # named exit points, meter beats from the start
    layers: tuple[Layering, ...] = ()
    mark: Mark | None = field(default=None, compare=False)
    sends: Sends = Sends()  # `mix:` how wet the state sounds

    @property
    def beats_per_loop(self) -> float:
        """Quarter notes in one loop."""
        return self.bars * quarters_per_bar(self.meter)

    def cue(self, name: str) -> float | None:
        return dict(self.cues).get(name)


@dataclass(frozen=True, slots=True)
class Condition:
    """`intensity > 0.8`: fires when it becomes true; re-arms once the value has come
    back past the threshold by `hysteresis`."""

    param: str
    op: str  # ">" | "<"
    threshold: float
    hysteresis: float = 0.05

    def holds(self, value: float) -> bool:
        return value > self.threshold if self.op == ">" else value < self.threshold

    def rearms(self, value: float) -> bool:
        if self.op == ">":
            return value < self.threshold - self.hysteresis
        return value > self.threshold + self.hysteresis

    def __str__(self) -> str:
        return f"{self.param} {self.op} {self.threshold:g}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    source: str  # a state name or "any"
    event: str  # the event name, or the condition's text for a parameter rule
    target: str | None  # None: a rule that only plays a stinger
    exit: Exit | str = Exit.IMMEDIATE  # or a cue name of the source state
    entry: Entry = Entry.START
    fade_out: Duration = Duration(0.5, Unit.SECONDS)
    fade_in: Duration = Duration(0.5, Unit.SECONDS)
    curve: Curve = Curve.EQUAL_POWER
    condition: Condition | None = None
    priority: int = 0
    while_pending: WhilePending = WhilePending.REPLACE  # a second one while this one waits
    duck_db: float = 0.0  # first-stage answer while a quantized exit waits
    respond_stinger: str | None = None  # first-stage answer: a stinger at once
    stinger: str | None = None  # played at the exit point
    bridge_bars: int = 0  # a generated bridge between source and destination
    mark: Mark | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Stinger:
    """A short phrase played over the music, quantized and moved into the current key."""

    name: str
    notes: tuple[Note, ...]  # written in C; transposed to the current tonic when played
    instrument: Instrument
    quantize: Quantize = Quantize.BEAT
    cooldown_seconds: float = 1.0
    gain_db: float = 0.0


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    default: float
    low: float
    high: float
    smoothing_seconds: float = 0.2  # stem gains follow this parameter this smoothly


@dataclass(frozen=True)
class Graph:
    path: str
    initial: str
    states: dict[str, State]
    transitions: tuple[Transition, ...]
    parameters: dict[str, Parameter]
    stingers: dict[str, Stinger] = field(default_factory=dict)

    def transition_for(self, state: str, event: str) -> Transition | None:
        """The rule for `event` in `state`: a rule from the state beats one from `any`,
        then the higher priority wins (ties are refused at load)."""
        best = None
        for rule in self.transitions:
            if rule.condition is not None or rule.event != event:
                continue
            if rule.source != state and (rule.source != ANY or rule.target == state):
                continue
            if best is None or _rank(rule, state) > _rank(best, state):
                best = rule
        return best

    def condition_rules(self, state: str) -> list[Transition]:
        """Parameter rules that apply in `state`, best first."""
        rules = [
            r
            for r in self.transitions
            if r.condition is not None
            and (r.source == state or (r.source == ANY and r.target != state))
        ]
        return sorted(rules, key=lambda r: _rank(r, state), reverse=True)

    @property
    def events(self) -> set[str]:
        return {rule.event for rule in self.transitions if rule.condition is None}


def _rank(rule: Transition, state: str) -> tuple[int, int]:
    return (1 if rule.source == state else 0, rule.priority)


def loop_spec(graph: Graph, state: str, seed: int) -> LoopSpec:
    """What `state` asks a generator for, with this seed."""
    s = graph.states[state]
    return LoopSpec(
        state=s.name,
        mood=s.mood,
        mode=s.mode,
        tonic=s.tonic,
        tempo_bpm=s.tempo_bpm,
        meter=s.meter,
        bars=s.bars,
        instruments=s.instruments,
        density=s.density,
        seed=seed,
        motif=s.motif,
        sends=s.sends,
    )


# -- loading ------------------------------------------------------------------------


def load_graph(path: str | Path) -> Graph:
    """Read and validate a graph file; raises GraphError naming file:line:column."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GraphError(Mark(str(path), 1, 1), f"cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = (
            len(data[data.rfind(b"\n", 0, exc.start) + 1 : exc.start].decode("utf-8", "replace"))
            + 1
        )
        raise GraphError(Mark(str(path), line, column),
                         f"not UTF-8: byte 0x{data[exc.start]:02x} cannot start a character; "
                         "save the file as UTF-8") from None  # fmt: skip
    return parse_graph(text, str(path), base_dir=path.resolve().parent)


def parse_graph(text: str, filename: str, base_dir: Path | None = None) -> Graph:
    try:
        doc = yamlmarks.load(text, filename)
    except yamlmarks.YamlSyntaxError as exc:
        raise GraphError(exc.mark, exc.message) from None
    return _Validator(filename, base_dir or Path(filename).resolve().parent).graph(doc)


class _Validator:
    # The keys each mapping takes: engine/score/graph_spec.py, shared with the JSON Schema.
    TOP, STATE, MIX, TRANSITION, STINGER, LAYER, RESPOND, PARAMETER = (
        tuple(keys) for keys in (graph_spec.GRAPH, graph_spec.STATE, graph_spec.MIX,
                                 graph_spec.TRANSITION, graph_spec.STINGER, graph_spec.LAYER,
                                 graph_spec.RESPOND, graph_spec.PARAMETER)
    )  # fmt: skip
    PENDING = graph_spec.PENDING

    def __init__(self, filename: str, base_dir: Path) -> None:
        self.file = filename
        self.base_dir = base_dir

    def fail(self, mark: Mark, message: str):
        raise GraphError(mark, message)

    def mapping(self, value, mark: Mark, what: str) -> Marked:
        if not isinstance(value, Marked):
            self.fail(mark, f"{what} must be a mapping, got {_kind(value)}")
        return value

    def known_keys(self, m: Marked, allowed: tuple[str, ...], what: str) -> None:
        for key in m:
            if key not in allowed:
                self.fail(
                    m.key_mark(key), f"unknown key {key!r} in {what}; expected one of "
                    f"{', '.join(allowed)}",
                )  # fmt: skip

    def graph(self, doc) -> Graph:
        if doc is None:
            self.fail(Mark(self.file, 1, 1), "the file is empty; expected a graph mapping")
        doc = self.mapping(doc, Mark(self.file, 1, 1), "the graph")
        self.known_keys(doc, self.TOP, "the graph")
        if doc.get("version", 1) != 1:
            self.fail(doc.value_mark("version"), "unsupported version; expected 1")
        defaults = self.mapping(doc.get("defaults", Marked()), doc.value_mark("defaults"),
                                "defaults")  # fmt: skip
        self.known_keys(defaults, self.STATE, "defaults")
        if defaults:  # checked like a state, even where every state overrides a value
            self.state("defaults", defaults, doc.value_mark("defaults"), Marked(), partial=True)
        if "states" not in doc:
            self.fail(doc.mark, "missing 'states': a graph needs at least one state")
        states_doc = self.mapping(doc["states"], doc.value_mark("states"), "states")
        if not states_doc:
            self.fail(doc.value_mark("states"), "'states' is empty; expected at least one state")
        sends = self.sends(doc.get("mix"), doc.value_mark("mix"), Sends())
        if "mix" in defaults:
            sends = self.sends(defaults["mix"], defaults.value_mark("mix"), sends)
        states = {}
        for name in states_doc:
            if not isinstance(name, str) or not re.fullmatch(graph_spec.STATE_NAME_PATTERN, name):
                self.fail(states_doc.key_mark(name), f"state name {name!r} must be a word")
            if name == ANY:
                self.fail(states_doc.key_mark(name), "'any' is reserved for transitions")
            body = states_doc[name] if states_doc[name] is not None else Marked()
            states[name] = self.state(name, body, states_doc.value_mark(name), defaults, sends)
        for state in states.values():
            if state.next is not None and state.next not in states:
                self.fail(state.mark, f"state {state.name!r}: next {state.next!r} is not a state;"
                          f" expected one of {', '.join(states)}")  # fmt: skip
        initial = doc.get("initial", next(iter(states)))
        if initial not in states:
            self.fail(doc.value_mark("initial"),
                      f"initial state {initial!r} is not defined; expected one of "
                      f"{', '.join(states)}")  # fmt: skip
        parameters = self.parameters(doc.get("parameters", Marked()), doc)
        for state in states.values():
            for layer in state.layers:
                if layer.param not in parameters:
                    self.fail(
                        state.mark,
                        f"state {state.name!r}: layer {layer.part!r} follows "
                        f"unknown parameter {layer.param!r}; declare it under parameters",
                    )
        stingers = self.stingers(doc.get("stingers", Marked()), doc)
        transitions = self.transitions(doc.get("transitions", MarkedList()), doc, states,
                                       parameters, stingers)  # fmt: skip
        return Graph(self.file, initial, states, transitions, parameters, stingers)

    def state(self, name: str, body, mark: Mark, defaults: Marked, sends: Sends | None = None,
              partial: bool = False) -> State:  # fmt: skip
        """A state's settings over the defaults (and its `mix:` over `sends`); `partial`: the
        defaults themselves (no instruments needed)."""
        body = self.mapping(body, mark, f"state {name!r}")
        self.known_keys(body, self.STATE, f"state {name!r}")

        def get(key, default=None):
            if key in body:
                return body[key], body.value_mark(key)
            if key in defaults:
                return defaults[key], defaults.value_mark(key)
            return default, mark

        mood, m = get("mood", "calm")
        if mood not in MOODS:
            self.fail(m, f"unknown mood {mood!r}; expected one of {', '.join(MOODS)}")
        mode, m = get("mode", None)
        key, km = get("key", "C")
        tonic, key_mode = self.key(key, km)
        mode = mode or key_mode or "major"
        if mode not in MODES:
            self.fail(m, f"unknown mode {mode!r}; expected major or minor")
        tempo, m = get("tempo", 120)
        if not _number(tempo) or not 30 <= tempo <= 300:
            self.fail(m, f"tempo must be a number of BPM in 30..300, got {tempo!r}")
        meter_text, m = get("meter", "4/4")
        meter = self.meter(meter_text, m)
        bars, bm = get("bars", None)
        if bars is not None:
            if not isinstance(bars, int) or isinstance(bars, bool) or not 1 <= bars <= 64:
                self.fail(bm, f"bars must be a whole number 1..64, got {bars!r}")
        else:
            seconds, m = get("loop_seconds", 8)
            if not _number(seconds) or not 1 <= seconds <= 120:
                self.fail(m, f"loop_seconds must be a number 1..120, got {seconds!r}")
            bar_seconds = quarters_per_bar(meter) * 60.0 / tempo
            bars = max(1, round(seconds / bar_seconds))
        instruments_doc, m = get("instruments", None)
        if instruments_doc is None and partial:
            instruments_doc = Marked({"pad": "strings"})
        if instruments_doc is None:
            self.fail(mark, f"state {name!r} has no instruments; expected e.g. "
                      "{pad: strings, bass: acoustic_bass}")  # fmt: skip
        instruments_doc = self.mapping(instruments_doc, m, "instruments")
        instruments = []
        for part in PARTS:  # canonical part order = stem order
            if part in instruments_doc:
                try:
                    instruments.append((part, gm.instrument(part, instruments_doc[part])))
                except ValueError as exc:
                    self.fail(instruments_doc.value_mark(part), str(exc))
        for part in instruments_doc:
            if part not in PARTS:
                self.fail(
                    instruments_doc.key_mark(part),
                    f"unknown part {part!r}; expected one of {', '.join(PARTS)}",
                )
        if not instruments:
            self.fail(m, "instruments is empty; expected at least one part")
        density, m = get("density", "medium")
        if density not in DENSITIES:
            self.fail(m, f"unknown density {density!r}; expected one of {', '.join(DENSITIES)}")
        repeats, m = get("repeats", 2)
        if not isinstance(repeats, int) or isinstance(repeats, bool) or not 1 <= repeats <= 64:
            self.fail(m, f"repeats must be a whole number 1..64, got {repeats!r}")
        once, m = get("once", False)
        if not isinstance(once, bool):
            self.fail(m, f"once must be true or false, got {once!r}")
        nxt, m = get("next", None)
        if nxt is not None and not isinstance(nxt, str):
            self.fail(m, f"next must be a state name, got {nxt!r}")
        motif_path, m = get("motif", None)
        motif = self.motif(motif_path, m, tonic) if motif_path is not None else ()
        loop_beats = bars * meter.beats_per_bar  # cues count meter beats, as the clock does
        cues = self.cues(body.get("cues", Marked()), body.value_mark("cues"), loop_beats)
        layers = self.layers(body.get("layers", Marked()), body.value_mark("layers"),
                             [p for p, _ in instruments])  # fmt: skip
        sends = sends or Sends()
        if isinstance(body, Marked) and "mix" in body:
            sends = self.sends(body["mix"], body.value_mark("mix"), sends)
        return State(name=name, mood=mood, mode=mode, tonic=tonic, tempo_bpm=float(tempo),
                     meter=meter, bars=bars, instruments=tuple(instruments), density=density,
                     repeats=repeats, once=once, next=nxt, motif=motif, cues=cues,
                     layers=layers, mark=mark, sends=sends)  # fmt: skip

    def sends(self, doc, mark: Mark, base: Sends) -> Sends:
        """`mix: {reverb: 0.3, chorus: 0.1}`: each key, 0..1, overrides `base`."""
        if doc is None:
            return base
        doc = self.mapping(doc, mark, "mix")
        self.known_keys(doc, self.MIX, "mix")
        values = {}
        for key in doc:
            value = doc[key]
            if not _number(value) or not 0 <= value <= 1:
                self.fail(doc.value_mark(key), f"mix {key} must be a number 0..1, got {value!r}")
            values[key] = float(value)
        return replace(base, **values)

    def cues(self, doc, mark: Mark, loop_beats: float) -> tuple[tuple[str, float], ...]:
        doc = self.mapping(doc, mark, "cues")
        out = []
        for name, beats in doc.items():
            if name in RESERVED_CUE_NAMES:
                self.fail(doc.key_mark(name), f"cue name {name!r} is an exit or quantize kind "
                          f"({', '.join(sorted(RESERVED_CUE_NAMES))}); pick another")  # fmt: skip
            if not _number(beats) or not 0 <= beats < loop_beats:
                self.fail(doc.value_mark(name), f"cue {name!r} must be meter beats from the loop "
                          f"start in 0..{loop_beats:g}, got {beats!r}")  # fmt: skip
            out.append((name, float(beats)))
        return tuple(out)

    def layers(self, doc, mark: Mark, parts: list[str]) -> tuple[Layering, ...]:
        doc = self.mapping(doc, mark, "layers")
        out = []
        for part, spec in doc.items():
            if part not in parts:
                self.fail(doc.key_mark(part), f"layer {part!r} is not a part of this state; "
                          f"expected one of {', '.join(parts)}")  # fmt: skip
            spec = self.mapping(spec, doc.value_mark(part), f"layer {part!r}")
            self.known_keys(spec, self.LAYER, f"layer {part!r}")
            param = spec.get("param")
            if not isinstance(param, str):
                self.fail(spec.mark, f"layer {part!r} needs param: the parameter it follows")
            curve = spec.get("curve", [[0, 0], [1, 1]])
            points = []
            if isinstance(curve, list):
                for point in curve:
                    if (
                        isinstance(point, list)
                        and len(point) == 2
                        and all(map(_number, point))
                        and 0 <= point[1] <= 1
                    ):
                        points.append((float(point[0]), float(point[1])))
            xs = [x for x, _ in points]
            if len(points) < 2 or len(points) != len(curve) or xs != sorted(set(xs)):
                self.fail(
                    spec.value_mark("curve"),
                    "curve must be a list of [value, gain] points "
                    "with increasing values and gains in 0..1, e.g. [[0, 0], [0.6, 1]]",
                )
            out.append(Layering(part, param, tuple(points)))
        return tuple(out)

    def key(self, key, mark: Mark) -> tuple[int, str | None]:
        match = re.fullmatch(graph_spec.KEY_PATTERN, str(key))
        if not match:
            self.fail(mark, f"key must be a note name such as D, F# or Bb minor, got {key!r}")
        name = match.group(1)[0].upper() + match.group(1)[1:]
        return _TONICS[name], match.group(2)

    def meter(self, text, mark: Mark) -> Meter:
        match = re.fullmatch(graph_spec.METER_PATTERN, str(text))
        if not match or int(match.group(2)) not in (2, 4, 8) or not 1 <= int(match.group(1)) <= 16:
            self.fail(mark, f"meter must look like 4/4, 3/4 or 6/8, got {text!r}")
        return Meter(int(match.group(1)), int(match.group(2)))

    def motif(self, value, mark: Mark, tonic: int) -> tuple[Note, ...]:
        from engine.score.motif import MotifError, read_motif

        if not isinstance(value, str):
            self.fail(mark, f"motif must be a path to a .mid file, got {value!r}")
        path = (self.base_dir / value).resolve()
        if not path.is_relative_to(self.base_dir):
            self.fail(mark, f"motif {value!r} is outside the graph's folder {self.base_dir}")
        try:
            return read_motif(path, tonic)
        except MotifError as exc:
            self.fail(mark, f"motif {value!r}: {exc}")

    def transitions(self, items, doc: Marked, states: dict[str, State], parameters,
                    stingers) -> tuple[Transition, ...]:  # fmt: skip
        if not isinstance(items, MarkedList):
            self.fail(doc.value_mark("transitions"), "transitions must be a list")
        rules: list[Transition] = []
        seen: dict[tuple, Mark] = {}
        for item, mark in zip(items, getattr(items, "item_marks", []), strict=True):
            t = self.mapping(item, mark, "a transition")
            self.known_keys(t, self.TRANSITION, "a transition")
            if "from" not in t:
                self.fail(t.mark, "transition needs 'from' (a state or 'any')")
            if ("on" in t) == ("when" in t):
                self.fail(t.mark, "transition needs exactly one of 'on' (an event) or 'when' "
                          "(a condition such as 'intensity > 0.8')")  # fmt: skip
            if "to" not in t and "stinger" not in t:
                self.fail(t.mark, "transition needs 'to' (or a 'stinger' to play)")
            source, target = t["from"], t.get("to")
            if source != ANY and source not in states:
                self.fail(t.value_mark("from"), f"from {source!r} is not a state; expected "
                          f"'any' or one of {', '.join(states)}")  # fmt: skip
            if target is not None and target not in states:
                self.fail(
                    t.value_mark("to"),
                    f"to {target!r} is not a state; expected one of {', '.join(states)}",
                )
            condition = None
            if "on" in t:
                event = t["on"]
                if not isinstance(event, str) or not event:
                    self.fail(t.value_mark("on"), f"on must be an event name, got {event!r}")
            else:
                condition = self.condition(t, parameters)
                event = str(condition)
            exit_ = t.get("exit", Exit.IMMEDIATE)
            if exit_ in EXITS:
                exit_ = Exit(exit_)
            else:
                sources = list(states.values()) if source == ANY else [states[source]]
                if not isinstance(exit_, str) or any(s.cue(exit_) is None for s in sources):
                    self.fail(t.value_mark("exit"), f"exit {exit_!r} is not one of "
                              f"{', '.join(EXITS)} nor a cue of {source!r}")  # fmt: skip
            entry = Entry(self.choice(t, "entry", ENTRIES, Entry.START))
            curve = Curve(self.choice(t, "curve", CURVES, Curve.EQUAL_POWER))
            pending = WhilePending(self.choice(t, "while_pending", self.PENDING, "replace"))
            fade = self.duration(t.get("fade", "0.5s"), t.value_mark("fade"))
            fade_out = (
                self.duration(t["fade_out"], t.value_mark("fade_out")) if "fade_out" in t else fade
            )
            fade_in = (
                self.duration(t["fade_in"], t.value_mark("fade_in")) if "fade_in" in t else fade
            )
            priority = t.get("priority", 0)
            if not isinstance(priority, int) or isinstance(priority, bool):
                self.fail(t.value_mark("priority"), f"priority must be a whole number, got "
                          f"{priority!r}")  # fmt: skip
            duck_db, respond_stinger = self.respond(t, stingers)
            stinger = t.get("stinger")
            if stinger is not None and stinger not in stingers:
                self.fail(
                    t.value_mark("stinger"),
                    f"stinger {stinger!r} is not defined; expected "
                    f"one of {', '.join(stingers) or '(none: add a stingers section)'}",
                )
            bridge = t.get("bridge", False)
            bridge_bars = 1 if bridge is True else 0 if bridge is False else bridge
            if not isinstance(bridge_bars, int) or not 0 <= bridge_bars <= 4:
                self.fail(t.value_mark("bridge"), "bridge must be true, false or 1..4 bars")
            if bridge_bars and target is None:
                self.fail(t.value_mark("bridge"), "a bridge needs a destination ('to')")
            key = (source, event, priority)
            if key in seen:
                self.fail(
                    t.mark,
                    f"a second rule for {event!r} from {source!r} with priority "
                    f"{priority} (the first is at {seen[key]}); keep one or set priority",
                )
            seen[key] = t.mark
            rules.append(Transition(
                source=source, event=event, target=target, exit=exit_, entry=entry,
                fade_out=fade_out, fade_in=fade_in, curve=curve, condition=condition,
                priority=priority, while_pending=pending, duck_db=duck_db,
                respond_stinger=respond_stinger, stinger=stinger, bridge_bars=bridge_bars,
                mark=t.mark))  # fmt: skip
        return tuple(rules)

    def condition(self, t: Marked, parameters) -> Condition:
        text = t["when"]
        match = re.fullmatch(graph_spec.WHEN_PATTERN, str(text))
        if not match:
            self.fail(t.value_mark("when"), f"when must look like 'intensity > 0.8', got {text!r}")
        param, op, threshold = match.group(1), match.group(2), float(match.group(3))
        if param not in parameters:
            self.fail(t.value_mark("when"), f"unknown parameter {param!r}; expected one of "
                      f"{', '.join(parameters) or '(none declared)'}")  # fmt: skip
        hysteresis = t.get("hysteresis", 0.05 * (parameters[param].high - parameters[param].low))
        if not _number(hysteresis) or hysteresis < 0:
            self.fail(t.value_mark("hysteresis"), "hysteresis must be a number >= 0")
        return Condition(param, op, threshold, float(hysteresis))

    def respond(self, t: Marked, stingers) -> tuple[float, str | None]:
        if "respond" not in t:
            return 0.0, None
        r = self.mapping(t["respond"], t.value_mark("respond"), "respond")
        self.known_keys(r, self.RESPOND, "respond")
        duck_db = 0.0
        if "duck" in r:
            match = re.fullmatch(graph_spec.DUCK_PATTERN, str(r["duck"]))
            if not match or not -60 <= float(match.group(1)) <= 0:
                self.fail(r.value_mark("duck"), f"duck must look like -6dB (0 to -60), got "
                          f"{r['duck']!r}")  # fmt: skip
            duck_db = float(match.group(1))
        stinger = r.get("stinger")
        if stinger is not None and stinger not in stingers:
            self.fail(r.value_mark("stinger"), f"stinger {stinger!r} is not defined")
        return duck_db, stinger

    def stingers(self, doc, top: Marked) -> dict[str, Stinger]:
        from engine.score.motif import MotifError, read_motif

        doc = self.mapping(doc, top.value_mark("stingers"), "stingers")
        out = {}
        for name, spec in doc.items():
            spec = self.mapping(spec, doc.value_mark(name), f"stinger {name!r}")
            self.known_keys(spec, self.STINGER, f"stinger {name!r}")
            if "midi" not in spec:
                self.fail(spec.mark, f"stinger {name!r} needs midi: a .mid file (written in C)")
            path = (self.base_dir / str(spec["midi"])).resolve()
            if not path.is_relative_to(self.base_dir):
                self.fail(spec.value_mark("midi"), "the stinger's file is outside the graph's "
                          "folder")  # fmt: skip
            try:
                notes = read_motif(path, 0)
            except MotifError as exc:
                self.fail(spec.value_mark("midi"), f"stinger {name!r}: {exc}")
            try:
                instrument = gm.instrument("lead", spec.get("instrument", "orchestra_hit"))
            except ValueError as exc:
                self.fail(spec.value_mark("instrument"), str(exc))
            quantize = Quantize(self.choice(spec, "quantize", graph_spec.QUANTIZE, Quantize.BEAT))
            cooldown = self.duration(spec.get("cooldown", "1s"), spec.value_mark("cooldown"))
            if cooldown.unit != Unit.SECONDS:
                self.fail(spec.value_mark("cooldown"), "cooldown must be in seconds, e.g. 2s")
            gain_db = spec.get("gain_db", 0.0)
            if not _number(gain_db) or not -60 <= gain_db <= 12:
                self.fail(spec.value_mark("gain_db"), "gain_db must be a number in -60..12")
            out[name] = Stinger(name, notes, instrument, quantize, cooldown.amount, float(gain_db))
        return out

    def choice(self, m: Marked, key: str, allowed: tuple[str, ...], default: str) -> str:
        value = m.get(key, default)
        if value not in allowed:
            self.fail(m.value_mark(key), f"{key} {value!r} is not one of {', '.join(allowed)}")
        return value

    def duration(self, value, mark: Mark) -> Duration:
        if _number(value):
            return Duration(float(value), Unit.SECONDS)
        match = re.fullmatch(graph_spec.LENGTH_PATTERN, str(value))
        if not match:
            self.fail(mark, f"a length must look like 0.5s, 250ms, 1 beat or 2 bars, got {value!r}")
        amount, unit = float(match.group(1)), match.group(2)
        if unit == "ms":
            return Duration(amount / 1000.0, Unit.SECONDS)
        if unit.startswith("s"):
            return Duration(amount, Unit.SECONDS)
        return Duration(amount, Unit.BEATS if unit.startswith("beat") else Unit.BARS)

    def parameters(self, doc, top: Marked) -> dict[str, Parameter]:
        doc = self.mapping(doc, top.value_mark("parameters"), "parameters")
        result = {}
        for name in doc:
            p = self.mapping(doc[name], doc.value_mark(name), f"parameter {name!r}")
            self.known_keys(p, self.PARAMETER, f"parameter {name!r}")
            low, high = p.get("range", [0.0, 1.0])[:2] if isinstance(p.get("range"), list) else (
                None, None)  # fmt: skip
            if not (_number(low) and _number(high) and low < high):
                self.fail(p.value_mark("range"), "range must be [low, high] with low < high")
            default = p.get("default", low)
            if not _number(default) or not low <= default <= high:
                self.fail(p.value_mark("default"), f"default must be a number in [{low}, {high}]")
            smoothing = self.duration(p.get("smoothing", "0.2s"), p.value_mark("smoothing"))
            if smoothing.unit != Unit.SECONDS:
                self.fail(p.value_mark("smoothing"), "smoothing must be in seconds, e.g. 0.2s")
            result[name] = Parameter(name, float(default), float(low), float(high),
                                     smoothing.amount)  # fmt: skip
        return result


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind(value) -> str:
    if value is None:
        return "nothing"
    kinds = {str: "text", int: "a number", float: "a number", bool: "true/false",
             list: "a list", MarkedList: "a list"}  # fmt: skip
    return kinds.get(type(value), type(value).__name__)
