"""Finding the SoundFont Segue renders with, and checking that FluidSynth is there.

Order: the path the user gave, `$SEGUE_SOUNDFONT`, MuseScore_General.sf3 from the
Debian package `musescore-general-soundfont-small` (MIT, sounds best of the small
General MIDI fonts), then TimGM6mb.sf2 (GPL-2) shipped inside the pretty_midi wheel,
a fallback for pip-only installs. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

ENV_VAR = "SEGUE_SOUNDFONT"
SYSTEM_SOUNDFONTS: tuple[Path, ...] = (
    Path("/usr/share/sounds/sf3/MuseScore_General.sf3"),
    Path("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"),
)
PRETTY_MIDI_SOUNDFONT = "TimGM6mb.sf2"


class SoundFontNotFound(Exception):
    """No usable SoundFont (or no synthesizer to play it); the message is one line that says
    what to do."""


def check_synth() -> None:
    """Raise SoundFontNotFound naming the package to install when FluidSynth is missing;
    loads nothing (the daemon's process never loads the synthesizer: its worker does)."""
    import ctypes.util

    if importlib.util.find_spec("fluidsynth") is None:
        raise SoundFontNotFound("pyfluidsynth is not installed: pip install pyfluidsynth")
    if ctypes.util.find_library("fluidsynth") is None:
        raise SoundFontNotFound("the FluidSynth library is missing: apt-get install libfluidsynth3")


def find_soundfont(explicit: str | Path | None = None) -> Path:
    """The SoundFont to load (FluidSynth must be there to play it); raises SoundFontNotFound
    with a one-line fix."""
    check_synth()
    if explicit is not None:
        return _readable(Path(explicit), "the given SoundFont")
    env = os.environ.get(ENV_VAR)
    if env:
        return _readable(Path(env), f"${ENV_VAR}")
    for path in SYSTEM_SOUNDFONTS:
        if _is_readable(path):
            return path
    bundled = _pretty_midi_soundfont()
    if bundled is not None:
        return bundled
    raise SoundFontNotFound(
        "no SoundFont found: install musescore-general-soundfont-small (apt), "
        f"`pip install pretty_midi`, or point --soundfont / ${ENV_VAR} at a .sf2/.sf3 file"
    )


def _readable(path: Path, what: str) -> Path:
    path = path.expanduser()
    if not path.exists():
        raise SoundFontNotFound(f"{what} {path} does not exist; give the path of a .sf2/.sf3 file")
    if not _is_readable(path):
        raise SoundFontNotFound(f"{what} {path} is not a readable file; check the path and rights")
    return path


def _is_readable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.R_OK)


def _pretty_midi_soundfont() -> Path | None:
    """TimGM6mb.sf2 inside the installed pretty_midi package, located without importing it."""
    try:
        spec = importlib.util.find_spec("pretty_midi")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / PRETTY_MIDI_SOUNDFONT
        if _is_readable(path):
            return path
    return None
