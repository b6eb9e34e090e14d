"""The `segue` command line, as a user types it."""

from __future__ import annotations

import json
import subprocess
import sys

import soundfile

from tests.conftest import GAME, REPO


def segue(*args, cwd=None, timeout=180):
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)  # fmt: skip


def test_check_ok_and_error_exit_codes(tmp_path):
    ok = segue("check", str(GAME))
    assert ok.returncode == 0 and "5 states" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("states:\n  a: {mood: grumpy, instruments: {pad: strings}}\n")
    result = segue("check", str(bad))
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"{bad}:2:13: unknown mood 'grumpy'; expected one of "
        + "happy, triumphant, excited, calm, peaceful, dreamy, angry, tense, scary, sad, dark, "
        "mysterious"
    )
    assert "Traceback" not in result.stderr


def test_render_writes_audio_timeline_and_picture(tmp_path):
    session = tmp_path / "s.yaml"
    session.write_text("- {at: 1.0, event: enemy_spotted}\n- {at: 2.0, event: player_hit}\n")
    out, timeline, picture = tmp_path / "s.wav", tmp_path / "s.json", tmp_path / "s.png"
    result = segue("render", "--graph", str(GAME), "--events", str(session), "--out", str(out),
                   "--timeline", str(timeline), "--picture", str(picture), "--seconds", "4",
                   "--no-model", "--seed", "2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    info = soundfile.info(str(out))
    assert (info.samplerate, info.channels, info.frames) == (48000, 2, 4 * 48000)
    data = json.loads(timeline.read_text())
    assert [t["to"] for t in data["transitions"]] == ["combat"]
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_script_error_is_one_line(tmp_path):
    session = tmp_path / "s.yaml"
    session.write_text("- {at: soon, event: x}\n")
    result = segue("render", "--events", str(session), "--out", str(tmp_path / "x.wav"))
    assert result.returncode != 0
    assert result.stderr.strip().endswith("'at' must be seconds >= 0, got 'soon'")
    assert result.stderr.count("\n") == 1


def test_send_without_a_daemon_prints_nothing_and_succeeds():
    result = segue("send", "--port", "9", "--wait", "0.2", "/segue/status")
    assert result.returncode == 0 and result.stdout == ""


def test_help_lists_every_command():
    result = segue("--help")
    for command in ("run", "render", "check", "send", "devices", "generate", "export", "bench"):
        assert command in result.stdout
    assert (REPO / "examples" / "demo_game.py").exists()
    older = subprocess.run([sys.executable, "-m", "engine.cli", "--help"], capture_output=True,
                           text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert older.returncode == 0 and older.stdout == result.stdout  # the older spelling


def test_segue_run_starts_its_worker_before_importing_numpy():
    # The worker's own start (interpreter, numpy, onnxruntime, the SoundFont, the first loop)
    # is the critical path to the first sound: `segue run` spawns it before importing anything
    # heavy itself (the other subcommands' modules import numpy, mido and the synth).
    code = (
        "import sys\n"
        "import engine.making.supervisor as supervisor\n"
        "def prestart(*args, **kwargs):\n"
        "    heavy = ('numpy', 'mido', 'yaml', 'engine.making.synth')\n"
        "    print(sorted(m for m in heavy if m in sys.modules))\n"
        "    sys.exit(0)\n"
        "supervisor.prestart_worker = prestart\n"
        "from engine.tools.cli import main\n"
        "main(['run', '--output', 'null', '--graph', sys.argv[1]])\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(GAME)], capture_output=True, text=True,
                          cwd=REPO, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
