"""Finding the SoundFont: explicit path, $SEGUE_SOUNDFONT, system package, pretty_midi."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from engine.making import soundfont
from engine.making.soundfont import ENV_VAR, SoundFontNotFound, find_soundfont


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    return monkeypatch


def fake_font(tmp_path: Path, name: str = "font.sf2") -> Path:
    path = tmp_path / name
    path.write_bytes(b"RIFF")
    return path


@pytest.mark.parametrize(
    "explicit, words",
    [
        ("/nonexistent/segue/font.sf3", "does not exist"),
        ("~/no/such/font.sf2", "does not exist"),
    ],
)
def test_missing_explicit_path_is_a_one_line_error(clean_env, explicit, words):
    with pytest.raises(SoundFontNotFound) as error:
        find_soundfont(explicit)
    message = str(error.value)
    assert words in message and "\n" not in message
    assert Path(explicit).name in message


def test_directory_is_not_a_soundfont(clean_env, tmp_path):
    with pytest.raises(SoundFontNotFound, match="not a readable file"):
        find_soundfont(tmp_path)


def test_explicit_path_wins_over_environment(clean_env, tmp_path):
    explicit, env = fake_font(tmp_path, "a.sf2"), fake_font(tmp_path, "b.sf2")
    clean_env.setenv(ENV_VAR, str(env))
    assert find_soundfont(explicit) == explicit
    assert find_soundfont(str(explicit)) == explicit


def test_environment_wins_over_system(clean_env, tmp_path):
    env = fake_font(tmp_path)
    clean_env.setenv(ENV_VAR, str(env))
    assert find_soundfont() == env


def test_broken_environment_path_is_reported_not_skipped(clean_env, tmp_path):
    clean_env.setenv(ENV_VAR, str(tmp_path / "gone.sf3"))
    with pytest.raises(SoundFontNotFound, match=ENV_VAR):
        find_soundfont()


def test_system_soundfont_then_pretty_midi(clean_env, tmp_path):
    system = fake_font(tmp_path, "MuseScore_General.sf3")
    clean_env.setattr(soundfont, "SYSTEM_SOUNDFONTS", (tmp_path / "missing.sf3", system))
    assert find_soundfont() == system
    clean_env.setattr(soundfont, "SYSTEM_SOUNDFONTS", (tmp_path / "missing.sf3",))
    if importlib.util.find_spec("pretty_midi") is None:
        pytest.skip("pretty_midi is not installed")
    found = find_soundfont()
    assert found.name == "TimGM6mb.sf2" and found.is_file()


def test_nothing_found_says_how_to_fix(clean_env, tmp_path):
    clean_env.setattr(soundfont, "SYSTEM_SOUNDFONTS", ())
    clean_env.setattr(soundfont, "PRETTY_MIDI_SOUNDFONT", "no-such-font.sf2")
    with pytest.raises(SoundFontNotFound) as error:
        find_soundfont()
    message = str(error.value)
    assert "\n" not in message
    assert "musescore-general-soundfont-small" in message and ENV_VAR in message


def test_default_on_this_machine_is_a_real_soundfont(clean_env):
    path = find_soundfont()
    assert path.suffix in (".sf2", ".sf3") and path.stat().st_size > 1_000_000


def test_missing_fluidsynth_library_names_the_debian_package(monkeypatch):
    import ctypes.util

    real = ctypes.util.find_library
    monkeypatch.setattr(ctypes.util, "find_library",
                        lambda name: None if name == "fluidsynth" else real(name))  # fmt: skip
    with pytest.raises(SoundFontNotFound) as error:
        find_soundfont()
    message = str(error.value)
    assert message == "the FluidSynth library is missing: apt-get install libfluidsynth3"
