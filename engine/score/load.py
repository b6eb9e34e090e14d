"""Reading a graph file: YAML → a validated `Graph`.

Validation happens here, once. Every error names file:line:column and what was expected;
the keys, words and patterns come from engine/score/graph_spec.py (shared with the JSON
Schema); a state's own settings are checked in engine/score/load_state.py.
"""

import re
from pathlib import Path

from engine.score import gm, graph_spec, yamlmarks
from engine.score.graph import (
    ANY,
    Condition,
    Graph,
    GraphError,
    Parameter,
    State,
    Stinger,
    Transition,
)
from engine.score.graph_spec import CURVES, ENTRIES, EXITS
from engine.score.kinds import Curve, Entry, Exit, Quantize, WhilePending
from engine.score.load_state import StateChecks, _kind, _number
from engine.score.music import (
    Sends,
)
from engine.score.units import Duration, Unit
from engine.score.yamlmarks import Mark, Marked, MarkedList


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


class _Validator(StateChecks):
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
