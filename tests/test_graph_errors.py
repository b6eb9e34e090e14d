"""Every mistake in a graph file is one line that names file:line:column: table-driven."""

from __future__ import annotations

import pytest

from engine.score.graph import GraphError
from engine.score.load import load_graph

GOOD = (
    b"version: 1\n"
    b"initial: idle\n"
    b"defaults: {tempo: 100, mood: calm}\n"
    b"states:\n"
    b"  idle: {tempo: 90, instruments: {pad: strings}}\n"
    b"  combat: {tempo: 140, instruments: {lead: flute}}\n"
)

CASES = [
    # (what the designer did, the file's bytes, line, column, words the message must hold)
    ("a bad default every state overrides", GOOD.replace(b"tempo: 100", b"tempo: fast"),
     3, 19, "tempo must be a number"),
    ("an unknown default mood", GOOD.replace(b"mood: calm", b"mood: calmish"),
     3, 30, "unknown mood 'calmish'"),
    ("a NUL byte", GOOD.replace(b"combat:", b"com\x00bat:"), 6, 6, "U+0000"),
    ("a byte that is not UTF-8", GOOD.replace(b"combat:", b"comb\xffat:"), 6, 7, "not UTF-8"),
    ("a tab for indentation", GOOD.replace(b"  combat", b"\tcombat"), 6, 1, "YAML syntax"),
    ("an unclosed bracket", GOOD.replace(b"{lead: flute}}", b"{lead: flute}"), 7, 1,
     "YAML syntax"),
    ("a duplicate key", GOOD + b"  idle: {instruments: {pad: strings}}\n", 7, 3, "duplicate"),
    ("an unknown key in defaults", GOOD.replace(b"mood: calm", b"moood: calm"), 3, 24,
     "unknown key 'moood'"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "data", "line", "column", "words"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_a_mistake_is_one_line_at_its_place(tmp_path, what, data, line, column, words):
    path = tmp_path / "game.yaml"
    path.write_bytes(data)
    with pytest.raises(GraphError) as caught:
        load_graph(path)
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}:{line}:{column}: "), message
    assert words in message, message


def test_the_good_file_loads(tmp_path):
    path = tmp_path / "game.yaml"
    path.write_bytes(GOOD)
    assert set(load_graph(path).states) == {"idle", "combat"}
