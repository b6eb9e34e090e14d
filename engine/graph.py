"""The state graph: YAML → typed, validated, frozen objects.

Validation happens here, once. Every error names file:line:column and what was
expected; the rest of the engine trusts a `Graph`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from engine import gm, yamlmarks
from engine.music import (
    DENSITIES,
    MODES,
    MOODS,
    PARTS,
    PITCH_NAMES,
    Instrument,
    LoopSpec,
    Meter,
    Note,
)
from engine.yamlmarks import Mark, Marked, MarkedList

EXITS = ("immediate", "next_beat", "next_bar", "loop_end")
ENTRIES = ("start", "same_position", "same_beat")
CURVES = ("linear", "equal_power", "s_curve")
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
class Duration:
    amount: float
    unit: str  # "seconds" | "beats" | "bars"

    def frames(self, tempo_bpm: float, meter: Meter, sample_rate: int) -> int:
        if self.unit == "seconds":
            seconds = self.amount
        else:
            beats = self.amount * (meter.beats_per_bar if self.unit == "bars" else 1)
            seconds = beats * 60.0 / tempo_bpm * 4 / meter.beat_unit
        return max(0, round(seconds * sample_rate))

    def __str__(self) -> str:
        unit = {"seconds": "s", "beats": " beats", "bars": " bars"}[self.unit]
        return f"{self.amount:g}{unit}"


@dataclass(frozen=True, slots=True)
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
    mark: Mark | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Transition:
    source: str  # a state name or "any"
    event: str
    target: str
    exit: str = "immediate"
    entry: str = "start"
    fade: Duration = Duration(0.5, "seconds")
    curve: str = "equal_power"
    mark: Mark | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    default: float
    low: float
    high: float


@dataclass(frozen=True)
class Graph:
    path: str
    initial: str
    states: dict[str, State]
    transitions: tuple[Transition, ...]
    parameters: dict[str, Parameter]

    def transition_for(self, state: str, event: str) -> Transition | None:
        """The rule for `event` in `state`: a rule from the state beats one from `any`."""
        fallback = None
        for rule in self.transitions:
            if rule.event != event:
                continue
            if rule.source == state:
                return rule
            if rule.source == ANY and rule.target != state:
                fallback = rule
        return fallback

    @property
    def events(self) -> set[str]:
        return {rule.event for rule in self.transitions}


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
    )


# -- loading ------------------------------------------------------------------------


def load_graph(path: str | Path) -> Graph:
    """Read and validate a graph file; raises GraphError naming file:line:column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GraphError(Mark(str(path), 1, 1), f"cannot read: {exc.strerror}") from None
    return parse_graph(text, str(path), base_dir=path.resolve().parent)


def parse_graph(text: str, filename: str, base_dir: Path | None = None) -> Graph:
    try:
        doc = yamlmarks.load(text, filename)
    except yamlmarks.YamlSyntaxError as exc:
        raise GraphError(exc.mark, exc.message) from None
    return _Validator(filename, base_dir or Path(filename).resolve().parent).graph(doc)


class _Validator:
    TOP = ("version", "initial", "defaults", "states", "transitions", "parameters")
    STATE = (
        "mood", "mode", "key", "tempo", "meter", "bars", "loop_seconds", "instruments",
        "density", "repeats", "once", "next", "motif",
    )  # fmt: skip
    TRANSITION = ("from", "on", "to", "exit", "entry", "fade", "curve")

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
        if "states" not in doc:
            self.fail(doc.mark, "missing 'states': a graph needs at least one state")
        states_doc = self.mapping(doc["states"], doc.value_mark("states"), "states")
        if not states_doc:
            self.fail(doc.value_mark("states"), "'states' is empty; expected at least one state")
        states = {}
        for name in states_doc:
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w-]*", name):
                self.fail(states_doc.key_mark(name), f"state name {name!r} must be a word")
            if name == ANY:
                self.fail(states_doc.key_mark(name), "'any' is reserved for transitions")
            body = states_doc[name] if states_doc[name] is not None else Marked()
            states[name] = self.state(name, body, states_doc.value_mark(name), defaults)
        for state in states.values():
            if state.next is not None and state.next not in states:
                self.fail(state.mark, f"state {state.name!r}: next {state.next!r} is not a state;"
                          f" expected one of {', '.join(states)}")  # fmt: skip
        initial = doc.get("initial", next(iter(states)))
        if initial not in states:
            self.fail(doc.value_mark("initial"),
                      f"initial state {initial!r} is not defined; expected one of "
                      f"{', '.join(states)}")  # fmt: skip
        transitions = self.transitions(doc.get("transitions", MarkedList()), doc, states)
        parameters = self.parameters(doc.get("parameters", Marked()), doc)
        return Graph(self.file, initial, states, transitions, parameters)

    def state(self, name: str, body, mark: Mark, defaults: Marked) -> State:
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
            bar_seconds = meter.beats_per_bar * 4 / meter.beat_unit * 60.0 / tempo
            bars = max(1, round(seconds / bar_seconds))
        instruments_doc, m = get("instruments", None)
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
                self.fail(instruments_doc.key_mark(part),
                          f"unknown part {part!r}; expected one of {', '.join(PARTS)}")
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
        return State(name, mood, mode, tonic, float(tempo), meter, bars, tuple(instruments),
                     density, repeats, once, nxt, motif, mark)  # fmt: skip

    def key(self, key, mark: Mark) -> tuple[int, str | None]:
        match = re.fullmatch(r"\s*([A-Ga-g][#b]?)\s*(major|minor)?\s*", str(key))
        if not match:
            self.fail(mark, f"key must be a note name such as D, F# or Bb minor, got {key!r}")
        name = match.group(1)[0].upper() + match.group(1)[1:]
        return _TONICS[name], match.group(2)

    def meter(self, text, mark: Mark) -> Meter:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if not match or int(match.group(2)) not in (2, 4, 8) or not 1 <= int(match.group(1)) <= 16:
            self.fail(mark, f"meter must look like 4/4, 3/4 or 6/8, got {text!r}")
        return Meter(int(match.group(1)), int(match.group(2)))

    def motif(self, value, mark: Mark, tonic: int) -> tuple[Note, ...]:
        from engine.motif import MotifError, read_motif

        if not isinstance(value, str):
            self.fail(mark, f"motif must be a path to a .mid file, got {value!r}")
        path = (self.base_dir / value).resolve()
        if not path.is_relative_to(self.base_dir):
            self.fail(mark, f"motif {value!r} is outside the graph's folder {self.base_dir}")
        try:
            return read_motif(path, tonic)
        except MotifError as exc:
            self.fail(mark, f"motif {value!r}: {exc}")

    def transitions(self, items, doc: Marked, states: dict[str, State]) -> tuple[Transition, ...]:
        if not isinstance(items, MarkedList):
            self.fail(doc.value_mark("transitions"), "transitions must be a list")
        rules: list[Transition] = []
        seen: dict[tuple[str, str], Mark] = {}
        for item, mark in zip(items, items.item_marks, strict=True):
            t = self.mapping(item, mark, "a transition")
            self.known_keys(t, self.TRANSITION, "a transition")
            for required in ("from", "on", "to"):
                if required not in t:
                    self.fail(t.mark, f"transition needs '{required}'")
            source, target, event = t["from"], t["to"], t["on"]
            if source != ANY and source not in states:
                self.fail(t.value_mark("from"), f"from {source!r} is not a state; expected "
                          f"'any' or one of {', '.join(states)}")  # fmt: skip
            if target not in states:
                self.fail(t.value_mark("to"),
                          f"to {target!r} is not a state; expected one of {', '.join(states)}")
            if not isinstance(event, str) or not event:
                self.fail(t.value_mark("on"), f"on must be an event name, got {event!r}")
            exit_ = self.choice(t, "exit", EXITS, "immediate")
            entry = self.choice(t, "entry", ENTRIES, "start")
            curve = self.choice(t, "curve", CURVES, "equal_power")
            fade = self.duration(t.get("fade", "0.5s"), t.value_mark("fade"))
            key = (source, event)
            if key in seen:
                self.fail(t.mark, f"a second rule for event {event!r} from {source!r} "
                          f"(the first is at {seen[key]}); keep one")  # fmt: skip
            seen[key] = t.mark
            rules.append(Transition(source, event, target, exit_, entry, fade, curve, t.mark))
        return tuple(rules)

    def choice(self, m: Marked, key: str, allowed: tuple[str, ...], default: str) -> str:
        value = m.get(key, default)
        if value not in allowed:
            self.fail(m.value_mark(key), f"{key} {value!r} is not one of {', '.join(allowed)}")
        return value

    def duration(self, value, mark: Mark) -> Duration:
        if _number(value):
            return Duration(float(value), "seconds")
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|seconds?|ms|beats?|bars?)\s*", str(value))
        if not match:
            self.fail(mark, f"a length must look like 0.5s, 250ms, 1 beat or 2 bars, got {value!r}")
        amount, unit = float(match.group(1)), match.group(2)
        if unit == "ms":
            return Duration(amount / 1000.0, "seconds")
        if unit.startswith("s"):
            return Duration(amount, "seconds")
        return Duration(amount, "beats" if unit.startswith("beat") else "bars")

    def parameters(self, doc, top: Marked) -> dict[str, Parameter]:
        doc = self.mapping(doc, top.value_mark("parameters"), "parameters")
        result = {}
        for name in doc:
            p = self.mapping(doc[name], doc.value_mark(name), f"parameter {name!r}")
            self.known_keys(p, ("default", "range"), f"parameter {name!r}")
            low, high = p.get("range", [0.0, 1.0])[:2] if isinstance(p.get("range"), list) else (
                None, None)  # fmt: skip
            if not (_number(low) and _number(high) and low < high):
                self.fail(p.value_mark("range"), "range must be [low, high] with low < high")
            default = p.get("default", low)
            if not _number(default) or not low <= default <= high:
                self.fail(p.value_mark("default"), f"default must be a number in [{low}, {high}]")
            result[name] = Parameter(name, float(default), float(low), float(high))
        return result


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind(value) -> str:
    if value is None:
        return "nothing"
    return {str: "text", int: "a number", float: "a number", bool: "true/false",
            list: "a list", MarkedList: "a list"}.get(type(value), type(value).__name__)  # fmt: skip
