"""The state graph as typed, frozen objects: states, transitions, stingers, parameters.

engine/score/load.py reads and validates a graph file into these, once; every error names
file:line:column and what was expected. The rest of the engine trusts a `Graph`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.score.kinds import Curve, Entry, Exit, Quantize, WhilePending
from engine.score.music import (
    Instrument,
    LoopSpec,
    Meter,
    Note,
    Sends,
)
from engine.score.units import Duration, Unit, quarters_per_bar
from engine.score.yamlmarks import Mark

ANY = "any"


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
