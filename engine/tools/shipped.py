"""Where the files Segue ships are: the example graph with its motifs, stingers and JSON
Schema, the demo game and its session. They are package data (engine/statemachines and
engine/examples link to the repository's folders), so a source checkout and an installed
wheel find them the same way."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

GRAPH_FOLDER = "statemachines"
GRAPH_FILE = "game.yaml"
SCHEMA_FILE = f"{GRAPH_FOLDER}/segue-graph.schema.json"
# What `segue init` copies: the graph, its assets and the schema its first line names.
STARTER = (GRAPH_FILE, "segue-graph.schema.json", "motifs", "stingers")
DEMO_GAME = "examples/demo_game.py"
DEMO_SESSION = "examples/session.yaml"


def shipped(relative: str) -> Path:
    """The real path of a shipped file (in a source checkout: the repository's own file)."""
    return Path(str(files("engine").joinpath(relative))).resolve()
