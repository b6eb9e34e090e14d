"""Which transition happens: forced and automatic rules, the pending policy, conditions."""

from __future__ import annotations

import pytest

from engine.control import policy
from engine.control.policy import Pending
from engine.score.units import Duration
from tests.control.fakes import GRAPH, LOST, WIN, rule


def pending(event: str, switch: int = 1_000) -> Pending:
    return Pending(rule(event), switch, "calm", [], None, None)


@pytest.mark.parametrize(
    ("waiting", "now", "decision"),
    [
        (None, 0, "go"),
        (pending("enemy"), 999, "queue"),  # the waiting rule says what a second one does
        (pending("sneak"), 999, "ignore"),
        (pending("done"), 999, "replace"),
        (pending("enemy"), 1_000, "go"),  # its exit point has come: nothing waits
    ],
)
def test_while_pending(waiting, now, decision) -> None:
    assert policy.while_pending(waiting, now) == decision


@pytest.mark.parametrize(
    ("source", "target", "fade_out", "fade_in"),
    [
        ("calm", "fight", Duration(1.0, "beats"), Duration(1.0, "beats")),  # the rule's fades
        ("fight", "win", Duration(2.0, "beats"), Duration(0.25, "seconds")),
        ("win", "calm", Duration(0.5, "seconds"), Duration(0.5, "seconds")),  # no rule
    ],
)
def test_a_forced_state_takes_the_rules_fades(source, target, fade_out, fade_in) -> None:
    forced = policy.forced(GRAPH, source, target)
    assert (forced.source, forced.event, forced.target) == (source, "/segue/state", target)
    assert (forced.exit, forced.fade_out, forced.fade_in) == ("immediate", fade_out, fade_in)


@pytest.mark.parametrize(
    ("state", "previous", "target"),
    [
        (LOST, "fight", "calm"),  # `next` wins
        (WIN, "fight", "fight"),  # no next: back where it came from
        (WIN, "", "calm"),  # nowhere: the initial state
        (WIN, "win", None),  # never into itself
        (WIN, "gone", None),  # a state a reload removed
    ],
)
def test_a_once_state_moves_on_at_its_loop_end(state, previous, target) -> None:
    rule_ = policy.once_over(state, previous, GRAPH)
    assert (rule_ and rule_.target) == target
    if rule_:
        assert (rule_.event, rule_.exit) == ("once", "loop_end")


def test_refresh_and_gone() -> None:
    assert policy.refresh("calm").target == "calm"
    assert policy.refresh("calm").fade_in == Duration(0.3, "seconds")
    gone = policy.gone("deleted", GRAPH.initial)
    assert (gone.source, gone.event, gone.target) == ("deleted", "/segue/reload", "calm")


def test_a_condition_fires_once_then_rearms_past_its_hysteresis() -> None:
    params = {"intensity": 0.5}
    armed = policy.armed(GRAPH, "calm", params)
    assert list(armed.values()) == [True]
    fired = []
    for value in (0.9, 0.95, 0.78, 0.9, 0.7, 0.85):
        params["intensity"] = value
        got = policy.fires(GRAPH, "calm", "intensity", params, armed)
        fired.append(None if got is None else got.target)
    # 0.78 is still within 0.05 of 0.8: the rule stays spent until 0.7
    assert fired == ["fight", None, None, None, None, "fight"]
    assert policy.fires(GRAPH, "calm", "other", params, armed) is None


def test_a_condition_true_at_entry_waits_to_rearm() -> None:
    armed = policy.armed(GRAPH, "calm", {"intensity": 0.9})
    assert policy.fires(GRAPH, "calm", "intensity", {"intensity": 0.95}, armed) is None
    assert policy.armed(GRAPH, "fight", {"intensity": 0.9}) == {}


@pytest.mark.parametrize(
    ("last", "now", "cooldown", "cooling"),
    [(None, 0, 48_000, False), (0, 47_999, 48_000, True), (0, 48_000, 48_000, False)],
)
def test_cooling_down(last, now, cooldown, cooling) -> None:
    assert policy.cooling_down(last, now, cooldown) is cooling
