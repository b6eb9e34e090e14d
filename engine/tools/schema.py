"""The graph's JSON Schema, built from the validator's tables (engine/score/graph_spec.py).

YAML editors read it through the first line of a graph file:

    # yaml-language-server: $schema=segue-graph.schema.json

It describes the shape: keys, words, patterns, number ranges. What depends on the rest of the
file (state, stinger, parameter and cue names, a cue inside its loop) only `segue check` sees.
The schema ships beside the example graph; after editing graph_spec.py, write it again with

    python -m engine.tools.schema
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.score import graph_spec as spec
from engine.tools.shipped import SCHEMA_FILE, shipped


def _mapping(keys: dict, doc: str, required: tuple[str, ...] = ()) -> dict:
    shape = {"type": "object", "description": doc, "properties": keys,
             "additionalProperties": False}  # fmt: skip
    return shape | ({"required": list(required)} if required else {})


def _named(value: dict, doc: str, names: dict | None = None) -> dict:
    """A mapping from names the designer picks to `value`s."""
    return {"type": "object", "description": doc, "additionalProperties": value} | (
        {"propertyNames": names} if names else {}
    )


def graph_schema() -> dict:
    """The JSON Schema (draft-07, which yaml-language-server reads) of a graph file."""
    state = _mapping(spec.STATE, "a state: what the music is while the game is in it")
    transition = _mapping(spec.TRANSITION, "a rule", required=("from",))
    transition["allOf"] = [
        {"oneOf": [{"required": ["on"]}, {"required": ["when"]}],
         "description": "exactly one of on (an event) or when (a condition)"},
        {"anyOf": [{"required": ["to"]}, {"required": ["stinger"]}],
         "description": "to (a state), or a stinger to play"},
    ]  # fmt: skip
    definitions = {
        "defaults": state | {"description": "settings every state starts from"},
        "state": state,
        "states": _named(
            {"anyOf": [{"$ref": "#/definitions/state"}, {"type": "null"}]},
            "the states, by name",
            {"pattern": f"^(?:{spec.STATE_NAME_PATTERN})$", "not": {"const": "any"}},
        )
        | {"minProperties": 1},
        "instruments": _mapping(spec.INSTRUMENTS, "a General MIDI sound per part")
        | {"minProperties": 1},
        "cues": _named(
            spec.number(0),
            "named exit points: meter beats from the loop start",
            {"not": {"enum": sorted(spec.CUE_NAMES_TAKEN)}},
        ),  # fmt: skip
        "layers": _named(
            {"$ref": "#/definitions/layer"},
            "parts whose gain follows a parameter",
            {"enum": list(spec.INSTRUMENTS)},
        ),  # fmt: skip
        "layer": _mapping(
            spec.LAYER, "a part's gain as a curve of a parameter", required=("param",)
        ),  # fmt: skip
        "mix": {"anyOf": [_mapping(spec.MIX, "reverb and chorus sends"), {"type": "null"}]},
        "transitions": {"type": "array", "items": {"$ref": "#/definitions/transition"}},
        "transition": transition,
        "respond": _mapping(spec.RESPOND, "heard at once while a quantized exit waits"),
        "stingers": _named({"$ref": "#/definitions/stinger"}, "stingers, by name"),
        "stinger": _mapping(
            spec.STINGER, "a short phrase played over the music", required=("midi",)
        ),  # fmt: skip
        "parameters": _named({"$ref": "#/definitions/parameter"}, "parameters, by name"),
        "parameter": _mapping(spec.PARAMETER, "a continuous value the game sets"),
    }
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Segue state graph",
        "description": "An adaptive-music state graph for Segue (statemachines/game.yaml "
        "shows every feature). `segue check FILE` validates one completely.",
        **_mapping(spec.GRAPH, "a Segue state graph", required=("states",)),
        "definitions": definitions,
    }


def schema_text() -> str:
    return json.dumps(graph_schema(), indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.tools.schema",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=shipped(SCHEMA_FILE),
                        help="where to write it (default: beside the shipped graph)")  # fmt: skip
    args = parser.parse_args(argv)
    args.out.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
