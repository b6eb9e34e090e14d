"""Muting and soloing a part (from the live view or OSC) goes through the stems' gains."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from engine.control import commands as cmd
from engine.score.music import stem_scale
from engine.tools.render import ScriptItem, render
from tests.conftest import GAME

RATE = 48000
GRAPH = """\
version: 1
initial: calm
states:
  calm: {mood: calm, key: D, tempo: 90, bars: 2, instruments: {pad: strings, bass: acoustic_bass}}
transitions: []
"""


@pytest.fixture
def graph_path(tmp_path):
    shutil.copy(GAME.parent / "stingers" / "hit.mid", tmp_path / "hit.mid")
    path = tmp_path / "graph.yaml"
    path.write_text(GRAPH)
    return path


def played_stems(result, at_s: float):
    """(parts, the stems' gains at `at_s`, the clip, the main loop's anchor)."""
    conductor = result.conductor
    main = conductor.main
    layer = main.layer
    frame = round(at_s * RATE)
    gains = layer.stem_gains_at(frame - conductor.mixer.start_frame(layer.stem_base))
    return main.clip.parts, gains, main.clip, main.anchor


@pytest.mark.parametrize(
    ("commands", "heard"),
    [
        ([cmd.MutePart("bass", True)], {"pad"}),
        ([cmd.MutePart("bass", True), cmd.MutePart("bass", False)], {"pad", "bass"}),
        ([cmd.SoloPart("bass")], {"bass"}),
        ([cmd.SoloPart("bass"), cmd.SoloPart("")], {"pad", "bass"}),
        ([cmd.SoloPart("pad"), cmd.MutePart("pad", True)], set()),
    ],
)
def test_mute_and_solo_set_the_stems(graph_path, workshop, commands, heard):
    script = [ScriptItem(0.5 + 0.2 * i, c) for i, c in enumerate(commands)]
    result = render(graph_path, script, seconds=2.0, seed=1, workshop=workshop)
    parts, gains, clip, anchor = played_stems(result, 1.9)
    assert {p for p, g in zip(parts, gains, strict=True) if g > 0} == heard
    # What is heard is exactly the parts left on (the limiter stays out of it at this level).
    frames = np.arange(round(1.8 * RATE), round(2.0 * RATE))
    expected = sum(
        clip.stems[i][(frames - anchor) % clip.frames].astype(np.float32) * stem_scale(clip.stems)
        for i, p in enumerate(parts)
        if p in heard
    )  # fmt: skip (16-bit PCM stems)
    got = result.audio[frames]
    assert np.allclose(got, expected, atol=1e-4)


def test_an_unknown_part_is_refused_in_one_line(graph_path, workshop):
    result = render(graph_path, [], seconds=0.2, seed=1, workshop=workshop)
    reply = result.conductor.handle(cmd.MutePart("kazoo", True))
    assert reply == {"error": "unknown part 'kazoo'; parts are drums, bass, pad, lead"}
    assert result.conductor.handle(cmd.MutePart("", True))["error"].startswith("unknown part ''")
    assert result.conductor.parts.muted == set()
