"""The graph's words are enums, its objects are built by keyword, and cues count meter beats."""

from __future__ import annotations

import pytest

from engine.score.graph import GraphError, State, Transition
from engine.score.kinds import Curve, Entry, Exit, Quantize, WhilePending
from engine.score.load import parse_graph
from engine.score.music import transposition
from engine.score.units import Duration, Meter, Unit, quarters_per_bar, quarters_per_beat


def graph(cues: str = "{drop: 6}", meter: str = "4/4", exit_: str = "drop"):
    return parse_graph(
        f"""
version: 1
initial: a
states:
  a: {{mood: calm, tempo: 120, bars: 2, meter: {meter}, instruments: {{pad: strings}},
      cues: {cues}}}
  b: {{mood: angry, tempo: 90, instruments: {{lead: flute}}}}
transitions:
  - {{from: a, on: go, to: b, exit: {exit_}}}
  - {{from: b, on: back, to: a, exit: next_bar, entry: same_beat, curve: linear,
      while_pending: queue}}
""",
        "g.yaml",
    )


def test_words_load_as_enums_and_a_cue_exit_stays_its_name() -> None:
    to_b, to_a = graph().transitions
    assert to_b.exit == "drop" and not isinstance(to_b.exit, Exit)
    assert (to_a.exit, to_a.entry, to_a.curve, to_a.while_pending) == (
        Exit.NEXT_BAR, Entry.SAME_BEAT, Curve.LINEAR, WhilePending.QUEUE)  # fmt: skip
    assert isinstance(to_a.exit, Exit) and isinstance(to_a.entry, Entry)
    assert to_a.fade_out == Duration(0.5, Unit.SECONDS)


@pytest.mark.parametrize("name", ["bar", "beat", "none", "next_bar", "immediate", "loop_end"])
def test_a_cue_may_not_be_named_like_a_grid(name) -> None:
    with pytest.raises(GraphError, match=f"cue name '{name}' is an exit or quantize kind"):
        graph(cues=f"{{{name}: 2}}", exit_="next_bar")


@pytest.mark.parametrize(
    ("meter", "beat", "ok"),
    [
        ("4/4", 7, True),
        ("4/4", 8, False),  # two bars of 4/4: 8 meter beats
        ("6/8", 11, True),  # two bars of 6/8: 12 eighths, as the clock counts them
        ("6/8", 12, False),
        ("3/4", 5.5, True),
    ],
)
def test_cues_count_meter_beats(meter, beat, ok) -> None:
    if ok:
        assert graph(cues=f"{{drop: {beat}}}", meter=meter).states["a"].cue("drop") == beat
    else:
        with pytest.raises(GraphError, match="must be meter beats from the loop start"):
            graph(cues=f"{{drop: {beat}}}", meter=meter)


def test_graph_objects_are_built_by_keyword() -> None:
    with pytest.raises(TypeError):
        Transition("a", "go", "b")  # type: ignore[misc]
    with pytest.raises(TypeError):
        State("a", "calm")  # type: ignore[misc]
    assert Transition(source="a", event="go", target="b").exit is Exit.IMMEDIATE


@pytest.mark.parametrize(
    ("meter", "per_beat", "per_bar"),
    [(Meter(4, 4), 1.0, 4.0), (Meter(6, 8), 0.5, 3.0), (Meter(3, 4), 1.0, 3.0),
     (Meter(7, 8), 0.5, 3.5), (Meter(2, 2), 2.0, 4.0)],
)  # fmt: skip
def test_quarters_and_meter_beats(meter, per_beat, per_bar) -> None:
    assert (quarters_per_beat(meter), quarters_per_bar(meter)) == (per_beat, per_bar)


@pytest.mark.parametrize(
    ("duration", "frames"),
    [
        (Duration(0.5, Unit.SECONDS), 24_000),
        (Duration(1, Unit.BEATS), 24_000),  # 120 bpm in 4/4
        (Duration(1, Unit.BARS), 96_000),
    ],
)
def test_durations(duration, frames) -> None:
    assert duration.frames(120, Meter(4, 4), 48_000) == frames
    assert Duration(1, Unit.BEATS).frames(120, Meter(6, 8), 48_000) == 12_000


def test_quantize_words() -> None:
    assert [str(q) for q in Quantize] == ["none", "beat", "bar"]


@pytest.mark.parametrize(
    ("to", "source", "shift"),
    [(0, 0, 0), (7, 0, -5), (6, 0, 6), (5, 0, 5), (2, 11, 3), (11, 2, -3), (0, 6, 6), (1, 8, 5)],
)
def test_transposition_takes_the_smallest_interval(to, source, shift) -> None:
    assert transposition(to, source) == shift
