"""The graph's JSON Schema (for YAML editors): current, accepts every shipped graph, refuses
typos, and agrees with the validator on every closed set and number range it states."""

from __future__ import annotations

import copy
import json
import shutil

import jsonschema
import pytest
import yaml

from engine.score import graph_spec, yamlmarks
from engine.score.graph import GraphError
from engine.score.load import load_graph
from engine.tools.schema import graph_schema, schema_text
from engine.tools.shipped import SCHEMA_FILE, shipped
from tests.conftest import GAME, REPO

VALIDATOR = jsonschema.Draft7Validator(graph_schema())
# Every graph file the project ships or tests with (examples/ holds a session, not a graph).
GRAPHS = sorted(
    [*REPO.glob("statemachines/*.yaml"), *REPO.glob("benchmarks/*.yaml"),
     *REPO.glob("tests/**/*.yaml")]
)  # fmt: skip


def schema_errors(text: str) -> list[str]:
    data = yamlmarks.load(text, "graph.yaml")  # as Segue reads it: `on:` is a key, not true
    return [e.message for e in VALIDATOR.iter_errors(data)]


def test_the_committed_schema_is_the_generated_one():
    committed = shipped(SCHEMA_FILE).read_text(encoding="utf-8")
    assert committed == schema_text(), "stale schema: run `python -m engine.tools.schema`"
    jsonschema.Draft7Validator.check_schema(json.loads(committed))


def test_the_shipped_graph_names_the_schema_beside_it():
    first = GAME.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=segue-graph.schema.json"
    assert (GAME.parent / "segue-graph.schema.json").is_file()


@pytest.mark.parametrize("path", GRAPHS, ids=[str(p.relative_to(REPO)) for p in GRAPHS])
def test_every_shipped_graph_is_valid_to_both(path):
    if "fixtures" not in path.parts:  # a fixture's MIDI files are written by its own test
        load_graph(path)
    assert schema_errors(path.read_text(encoding="utf-8")) == []


def test_the_graph_list_holds_the_shipped_ones():
    names = {str(p.relative_to(REPO)) for p in GRAPHS}
    assert {"statemachines/game.yaml", "benchmarks/latency.yaml"} <= names


# A typo the designer makes in game.yaml: both the schema and `segue check` refuse it.
TYPOS = [
    ("an unknown top-level key", "parameters:", "parametres:"),
    ("an unknown state key", "    density: low\n", "    densty: low\n"),
    ("an unknown transition key", "entry: same_beat}", "entri: same_beat}"),
    ("a misspelt curve", "curve: s_curve", "curve: s-curve"),
    ("a misspelt entry point", "entry: same_beat", "entry: same_bet"),
    ("a misspelt while_pending", "while_pending: queue", "while_pending: queued"),
    ("an unknown mood", "mood: mysterious", "mood: misterious"),
    ("an unknown instrument", "lead: vibraphone", "lead: vibraphon"),
    ("an unknown drum kit", "drums: brush", "drums: brushes"),
    ("a misspelt quantize", "quantize: bar", "quantize: bars"),
    ("a misspelt length unit", "fade: 1 beat, bridge", "fade: 1 beet, bridge"),
    ("a duck without dB", "duck: -9dB", "duck: -9"),
    ("a layer on an unknown part", "      pad:  {param", "      pads: {param"),
    ("a tempo out of range", "tempo: 144", "tempo: 444"),
]


@pytest.mark.parametrize(("what", "old", "new"), TYPOS, ids=[t[0] for t in TYPOS])
def test_a_typo_is_refused_by_both(tmp_path, what, old, new):
    text = GAME.read_text(encoding="utf-8")
    assert old in text
    text = text.replace(old, new, 1)
    assert schema_errors(text), f"the schema accepts {what}"
    shutil.copytree(GAME.parent, tmp_path / "g")
    (tmp_path / "g" / "game.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(GraphError):
        load_graph(tmp_path / "g" / "game.yaml")


# -- the schema's claims, held against the validator ----------------------------------------

BASE = {
    "states": {"a": {"instruments": {"pad": "strings"}}, "b": {"instruments": {"lead": "flute"}}},
    "transitions": [{"from": "a", "when": "p > 0.5", "to": "b"}],
    "stingers": {"hit": {"midi": "hit.mid"}},
    "parameters": {"p": {"range": [0, 1]}},
}
# Where a key of each table goes in BASE.
PLACES = {
    "graph": (graph_spec.GRAPH, lambda g: g),
    "state": (graph_spec.STATE, lambda g: g["states"]["a"]),
    "instruments": (graph_spec.INSTRUMENTS, lambda g: g["states"]["a"]["instruments"]),
    "mix": (graph_spec.MIX, lambda g: g["states"]["a"].setdefault("mix", {})),
    "transition": (graph_spec.TRANSITION, lambda g: g["transitions"][0]),
    "respond": (graph_spec.RESPOND, lambda g: g["transitions"][0].setdefault("respond", {})),
    "stinger": (graph_spec.STINGER, lambda g: g["stingers"]["hit"]),
    "parameter": (graph_spec.PARAMETER, lambda g: g["parameters"]["p"]),
}


def _claims():
    """(where, key, value, valid) for every word and every bound the tables state."""
    for where, (table, _) in PLACES.items():
        for key, shape in table.items():
            for part in [shape, *shape.get("anyOf", [])]:
                for word in part.get("enum", []):
                    yield where, key, word, True
                if part.get("enum") and part is shape:  # `exit` also takes any cue name
                    yield where, key, f"{part['enum'][0]}x", False
                step = 1 if part.get("type") == "integer" else 0.5
                if "minimum" in part:
                    yield where, key, part["minimum"], True
                    yield where, key, part["minimum"] - step, False
                if "maximum" in part:
                    yield where, key, part["maximum"], True
                    yield where, key, part["maximum"] + step, False


CLAIMS = list(_claims())


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("claims")
    shutil.copyfile(shipped("statemachines/stingers/hit.mid"), path / "hit.mid")
    return path


@pytest.mark.parametrize(("where", "key", "value", "valid"), CLAIMS,
                         ids=[f"{w}.{k}={v!r}" for w, k, v, _ in CLAIMS])  # fmt: skip
def test_the_schema_and_the_validator_agree(folder, where, key, value, valid):
    graph = copy.deepcopy(BASE)
    PLACES[where][1](graph)[key] = value
    text = yaml.safe_dump(graph, sort_keys=False)
    path = folder / "graph.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_graph(path)
        validator_ok = True
    except GraphError:
        validator_ok = False
    assert (validator_ok, not schema_errors(text)) == (valid, valid), text


def test_the_claims_cover_the_closed_sets():
    keys = {(where, key) for where, key, _, _ in CLAIMS}
    assert {("transition", "curve"), ("transition", "entry"), ("transition", "exit"),
            ("state", "mood"), ("state", "tempo"), ("stinger", "instrument"),
            ("instruments", "drums"), ("mix", "reverb")} <= keys  # fmt: skip
