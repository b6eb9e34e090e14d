"""Which transition happens: the rule for a command, parameter conditions, and what a second
transition does while one waits for its exit point.

Pure: graph and state in, a `Transition` or a decision out; no mixer, no pool, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.audio.mixer import Layer
from engine.control.clock import Main
from engine.control.layers import SWAP_FADE_SECONDS
from engine.score.graph import Graph, State, Transition
from engine.score.kinds import Exit, WhilePending
from engine.score.units import Duration, Unit

REFRESH_FADE_SECONDS = 0.3  # a live edit replaces the current loop this fast
FORCE_FADE_SECONDS = 0.5  # /segue/state with no matching rule


def seconds(value: float) -> Duration:
    return Duration(value, Unit.SECONDS)


@dataclass
class Pending:
    """A transition waiting for its exit point, and what played before it (to undo it)."""

    rule: Transition
    switch: int  # absolute frame
    state_before: str
    layers_before: list[Layer]
    main_before: Main | None
    clock_before: Main | None
    queued: list[tuple[Transition, int]] = field(default_factory=list)
    records: list = field(default_factory=list)  # its timeline entries, marked if cancelled


def while_pending(pending: Pending | None, now: int) -> WhilePending | str:
    """What a new transition does at frame `now`: "go" when nothing waits (or the wait is
    over), else the waiting rule's policy: "ignore", "queue" or "replace"."""
    if pending is None or now >= pending.switch:
        return "go"
    return pending.rule.while_pending


def forced(graph: Graph, source: str, target: str) -> Transition:
    """/segue/state: now, with the fades of the rule between the two states if there is one."""
    rule = next((r for r in graph.transitions if r.target == target and r.source == source), None)
    fade_out = rule.fade_out if rule else seconds(FORCE_FADE_SECONDS)
    fade_in = rule.fade_in if rule else seconds(FORCE_FADE_SECONDS)
    return Transition(
        source=source, event="/segue/state", target=target, fade_out=fade_out, fade_in=fade_in
    )


def refresh(state: str) -> Transition:
    """A live edit changed this state's music: its new loop replaces the playing one."""
    fade = seconds(REFRESH_FADE_SECONDS)
    return Transition(source=state, event="refresh", target=state, fade_out=fade, fade_in=fade)


def gone(state: str, initial: str) -> Transition:
    """A reload removed the playing state: back to the initial one."""
    fade = seconds(FORCE_FADE_SECONDS)
    return Transition(
        source=state, event="/segue/reload", target=initial, fade_out=fade, fade_in=fade
    )


def once_over(state: State, previous: str, graph: Graph) -> Transition | None:
    """A `once` state at its loop's end: on to `next`, else back where it came from."""
    target = state.next or previous or graph.initial
    if target not in graph.states or target == state.name:
        return None
    fade = seconds(SWAP_FADE_SECONDS)
    return Transition(
        source=state.name,
        event="once",
        target=target,
        exit=Exit.LOOP_END,
        fade_out=fade,
        fade_in=fade,
    )


def armed(graph: Graph, state: str, params: dict[str, float]) -> dict[Transition, bool]:
    """Each condition rule of `state` is armed while its condition does not hold."""
    return {
        rule: not rule.condition.holds(params.get(rule.condition.param, 0.0))
        for rule in graph.condition_rules(state)
    }


def fires(
    graph: Graph, state: str, param: str, params: dict[str, float], armed: dict[Transition, bool]
) -> Transition | None:
    """The best condition rule that `param`'s new value fires; updates `armed` (a rule fires
    once, then waits until its condition rearms)."""
    fire = None
    for rule in graph.condition_rules(state):
        condition = rule.condition
        if condition.param != param:
            continue
        value = params[param]
        was_armed = armed.get(rule, True)
        if was_armed and condition.holds(value):
            armed[rule] = False
            fire = fire or rule  # rules come best first
        elif not was_armed and condition.rearms(value):
            armed[rule] = True
    return fire


def cooling_down(last: int | None, now: int, cooldown_frames: int) -> bool:
    return last is not None and now - last < cooldown_frames
