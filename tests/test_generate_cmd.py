"""`segue generate`: loops of a state written as MIDI, PNG piano rolls and WAV."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile

from engine.tools import generate as generate_cmd
from engine.tools.midi import TICKS_PER_BEAT

GRAPH = """\
version: 1
initial: combat
defaults: {tempo: 120, meter: 4/4, loop_seconds: 8}
states:
  combat:
    mood: angry
    key: A
    mode: minor
    tempo: 144
    density: high
    instruments:
      {drums: power, bass: electric_bass_pick, pad: synth_strings, lead: distortion_guitar}
  waltz:
    mood: calm
    key: F
    mode: major
    tempo: 90
    meter: 3/4
    instruments: {pad: strings, lead: flute}
transitions:
  - {from: waltz, on: enemy_spotted, to: combat}
"""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="segue")
    generate_cmd.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["generate", *argv])


@pytest.fixture
def graph(tmp_path: Path) -> Path:
    path = tmp_path / "game.yaml"
    path.write_text(GRAPH)
    return path


def test_writes_midi_and_piano_rolls(graph: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = parse(
        [
            "--graph",
            str(graph),
            "--state",
            "waltz",
            "--count",
            "2",
            "--out",
            str(out),
            "--seed",
            "7",
        ]
    )
    assert args.func is generate_cmd.run
    assert generate_cmd.run(args) == 0
    for seed in (7, 8):
        midi = mido.MidiFile(out / f"waltz-{seed}.mid")
        assert midi.ticks_per_beat == TICKS_PER_BEAT
        meta = [m for m in midi.tracks[0] if m.is_meta]
        assert any(m.type == "time_signature" and m.numerator == 3 for m in meta)
        assert any(m.type == "set_tempo" and round(mido.tempo2bpm(m.tempo)) == 90 for m in meta)
        assert any(m.type == "key_signature" for m in meta)  # one MIDI writer, export's too
        assert len(midi.tracks) == 3  # conductor + pad + lead
        notes = [m for t in midi.tracks[1:] for m in t if m.type == "note_on" and m.velocity > 0]
        assert notes
        assert (out / f"waltz-{seed}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "waltz-7.mid").read_bytes() != (out / "waltz-8.mid").read_bytes()


def test_render_writes_a_wav_of_the_loop_length(graph: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = parse(["--graph", str(graph), "--state", "combat", "--out", str(out), "--render"])
    assert generate_cmd.run(args) == 0
    audio, rate = soundfile.read(out / "combat-0.wav")
    from engine.score.graph import loop_spec
    from engine.score.load import load_graph

    spec = loop_spec(load_graph(graph), "combat", 0)
    assert rate == 48_000 and abs(len(audio) - spec.frames) <= 1
    assert np.abs(audio).max() > 0.01
    midi = mido.MidiFile(out / "combat-0.mid")
    channels = {m.channel for t in midi.tracks for m in t if m.type == "note_on"}
    assert 9 in channels  # drums on MIDI channel 10


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--state", "boss"], "unknown state 'boss'"),
        (["--state", "combat", "--count", "0"], "--count"),
    ],
)
def test_user_mistakes_are_one_line(graph: Path, tmp_path: Path, caplog, argv, message) -> None:
    args = parse(["--graph", str(graph), "--out", str(tmp_path / "o"), *argv])
    with caplog.at_level(logging.ERROR, logger="segue"):
        assert generate_cmd.run(args) == 2
    assert message in caplog.text


def test_a_broken_graph_names_the_place(tmp_path: Path, caplog) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nstates:\n  idle: {mood: calm, tempo: fast}\n")
    args = parse(["--graph", str(bad), "--state", "idle", "--out", str(tmp_path / "o")])
    with caplog.at_level(logging.ERROR, logger="segue"):
        assert generate_cmd.run(args) == 2
    assert "bad.yaml:3" in caplog.text


def test_missing_model_falls_back_to_rules_and_says_so(graph: Path, tmp_path: Path, caplog) -> None:
    args = parse(["--graph", str(graph), "--state", "waltz", "--out", str(tmp_path / "o"),
                  "--model", str(tmp_path / "none.onnx")])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="segue"):
        assert generate_cmd.run(args) == 0
    assert "rule-based" in caplog.text
    assert (tmp_path / "o" / "waltz-0.mid").exists()
