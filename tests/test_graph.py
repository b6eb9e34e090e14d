"""The graph loader: every mistake names file:line:column and what was expected."""

from __future__ import annotations

import textwrap

import pytest

from engine.score.graph import GraphError, loop_spec
from engine.score.load import load_graph, parse_graph

GOOD = """\
version: 1
initial: idle
defaults: {tempo: 120, meter: 4/4, loop_seconds: 8}
states:
  idle:   {mood: calm, tempo: 90, key: D, instruments: {pad: strings, lead: flute}}
  combat: {mood: angry, tempo: 140, mode: minor, instruments: {drums: power, bass: electric_bass}}
transitions:
  - {from: idle, on: enemy_spotted, to: combat, exit: immediate, fade: 0.5s}
  - {from: any, on: calm_down, to: idle, fade: 2 beats}
parameters:
  intensity: {default: 0.5, range: [0, 1]}
"""


def test_good_graph_is_typed_and_frozen():
    graph = parse_graph(GOOD, "g.yaml")
    idle = graph.states["idle"]
    assert (idle.tempo_bpm, idle.tonic, idle.mode, idle.bars) == (90.0, 2, "major", 3)
    assert [p for p, _ in idle.instruments] == ["pad", "lead"]
    assert graph.states["combat"].instruments[0][1].is_drums
    rule = graph.transition_for("idle", "enemy_spotted")
    assert (rule.target, rule.fade_in.amount, rule.fade_in.unit) == ("combat", 0.5, "seconds")
    assert rule.fade_out == rule.fade_in  # `fade:` sets both
    assert graph.transition_for("combat", "calm_down").target == "idle"
    assert graph.transition_for("idle", "calm_down") is None  # `any` never targets itself
    with pytest.raises(AttributeError):
        idle.tempo_bpm = 100  # frozen
    spec = loop_spec(graph, "combat", seed=7)
    assert spec.bars * 4 * 60 / 140 == pytest.approx(8, abs=1.0)


def test_mix_at_the_top_in_defaults_and_per_state():
    text = _bad("version: 1", "version: 1\nmix: {reverb: 0.5, chorus: 0.2}")
    text = text.replace("tempo: 90,", "tempo: 90, mix: {reverb: 0.1},")
    graph = parse_graph(text, "g.yaml")
    idle, combat = graph.states["idle"].sends, graph.states["combat"].sends
    assert (idle.reverb, idle.chorus) == (0.1, 0.2)  # the state's key wins, the rest inherits
    assert (combat.reverb, combat.chorus) == (0.5, 0.2)
    assert loop_spec(graph, "idle", 0).sends == idle
    plain = parse_graph(GOOD, "g.yaml").states["idle"].sends
    assert (plain.reverb, plain.chorus) == (0.3, 0.1)
    text = GOOD.replace("loop_seconds: 8}", "loop_seconds: 8, mix: {chorus: 0}}")
    assert parse_graph(text, "g.yaml").states["combat"].sends.chorus == 0.0


def test_on_stays_a_string_key():
    """YAML 1.1 reads a bare `on` as True; designers write `on:` and mean the word."""
    graph = parse_graph(GOOD, "g.yaml")
    assert graph.transitions[0].event == "enemy_spotted"


def test_shipped_graph_loads():
    from tests.conftest import GAME

    graph = load_graph(GAME)
    assert {"idle", "explore", "combat", "victory", "defeat"} <= set(graph.states)
    assert graph.states["combat"].motif, "combat develops the hero motif"


def _bad(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


# (graph text, expected line, expected column, words the message must contain)
BAD = [
    (_bad("mood: calm", "mood: sleepy"), 5, 18, ["unknown mood 'sleepy'", "expected one of"]),
    (_bad("tempo: 90", "tempo: 900"), 5, 31, ["tempo must be", "30..300"]),
    (_bad("key: D", "key: H"), 5, 40, ["key must be a note name"]),
    (_bad("flute", "kazooo"), 5, 77, ["unknown General MIDI instrument 'kazooo'"]),
    (_bad("drums: power", "drums: tabla"), 6, 71, ["unknown drum kit 'tabla'"]),
    (_bad("pad: strings", "vocals: strings"), 5, 57, ["unknown part 'vocals'"]),
    (_bad("to: combat", "to: boss"), 8, 41, ["to 'boss' is not a state"]),
    (_bad("from: idle", "from: lobby"), 8, 12, ["from 'lobby' is not a state", "'any'"]),
    (_bad("exit: immediate", "exit: whenever"), 8, 55, ["exit 'whenever' is not one of"]),
    (_bad("fade: 0.5s", "fade: soon"), 8, 72, ["a length must look like"]),
    (_bad("initial: idle", "initial: menu"), 2, 10, ["initial state 'menu' is not defined"]),
    (_bad("meter: 4/4", "meter: four"), 3, 31, ["meter must look like"]),
    (_bad("range: [0, 1]", "range: [1, 0]"), 11, 36, ["range must be"]),
    (_bad("version: 1", "version: 3"), 1, 10, ["unsupported version"]),
    (_bad("  - {from: any", "  - {form: any"), 9, 6, ["unknown key 'form'"]),
    (
        _bad("parameters:", "  - {from: idle, on: enemy_spotted, to: idle}\nparameters:"),
        10,
        5,
        ["a second rule for 'enemy_spotted' from 'idle' with priority 0", "game.yaml:8:5"],
    ),
    ("states: 3\n", 1, 9, ["states must be a mapping, got a number"]),
    (_bad("idle:   {", "idle:   {{"), 6, 3, ["YAML syntax"]),
    ("", 1, 1, ["empty"]),
    (
        _bad("version: 1", "version: 1\nmix: {reverb: 2}"),
        2,
        15,
        ["mix reverb must be a number 0..1"],
    ),
    (_bad("tempo: 90,", "tempo: 90, mix: {echo: 0.2},"), 5, 41, ["unknown key 'echo' in mix"]),
    (_bad("loop_seconds: 8}", "loop_seconds: 8, mix: wet}"), 3, 58, ["mix must be a mapping"]),
]


@pytest.mark.parametrize("text,line,column,words", BAD)
def test_errors_name_file_line_column(text, line, column, words):
    with pytest.raises(GraphError) as info:
        parse_graph(text, "game.yaml")
    message = str(info.value)
    assert message.startswith(f"game.yaml:{line}:{column}: "), message
    for word in words:
        assert word in message, message


def test_motif_must_stay_inside_the_graph_folder(tmp_path):
    (tmp_path / "g.yaml").write_text(
        textwrap.dedent("""\
        states:
          a: {instruments: {lead: flute}, motif: ../secret.mid}
        """)
    )
    with pytest.raises(GraphError, match="outside the graph's folder"):
        load_graph(tmp_path / "g.yaml")


def test_missing_motif_file_is_named(tmp_path):
    (tmp_path / "g.yaml").write_text("states:\n  a: {instruments: {lead: flute}, motif: m.mid}\n")
    with pytest.raises(GraphError, match=r"g.yaml:2:42: motif 'm.mid': file not found"):
        load_graph(tmp_path / "g.yaml")


def test_a_graph_without_transitions_is_valid():
    graph = parse_graph("states:\n  only: {instruments: {pad: strings}}\n", "g.yaml")
    assert graph.transitions == () and graph.initial == "only"
