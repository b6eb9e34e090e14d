"""Same-key choke: a key struck again on a channel ends what is left of its previous note.

A string, a pipe or a drum head sounds one note at a time: struck again, the new note takes
over from what was still ringing. FluidSynth instead lets a released voice run its whole
release (a string preset's takes over a second to reach -90 dB) beside the new one, so a pad
that restrikes its chord every beat keeps three sounding copies of each note, and the synth
spends most of its time on releases 20-50 dB beneath the note that replaced them.

The synth knows from its own events when a key is struck again and how long ago its previous
note was released. At that moment every released voice of that channel and key gets a release
that ends `FADE_SECONDS` later (never a longer one than its own). FluidSynth's release falls
linearly in dB, 96 dB over its length, so the fade takes 96 * fade / (time since the note-off +
fade) dB off the old voice before it stops: all of it for a key struck again at its note-off,
24 dB at 150 ms after it (a pad restriking its chord each beat at 120 bpm), less when the old
voice has had longer to die away by itself.
"""

from __future__ import annotations

import ctypes
import math

FADE_SECONDS = 0.05  # a choked voice fades for this long, then stops
WINDOW_SECONDS = 6.0  # a key struck again later than this after its note-off is not looked for
_GEN_VOLENVRELEASE = 38  # SoundFont 2.01 generator: release of the volume envelope, timecents
_MAX_VOICES = 256
OFF, CHOKE, ON = 0, 1, 2  # the synth's event kinds, in the order they apply at one frame
_VP = ctypes.c_void_p


class Choker:
    """Shortens the released voices of a channel's key, through FluidSynth's voice API."""

    def __init__(self, lib, synth: int, sample_rate: int) -> None:
        self._synth = synth
        self._rate = float(sample_rate)
        self._voices = (_VP * _MAX_VOICES)()
        bind = [("fluid_synth_get_voicelist", [_VP, ctypes.POINTER(_VP), ctypes.c_int,
                                               ctypes.c_int], None),
                ("fluid_voice_get_channel", [_VP], ctypes.c_int),
                ("fluid_voice_get_key", [_VP], ctypes.c_int),
                ("fluid_voice_is_on", [_VP], ctypes.c_int),
                ("fluid_voice_gen_get", [_VP, ctypes.c_int], ctypes.c_float),
                ("fluid_voice_gen_set", [_VP, ctypes.c_int, ctypes.c_float], None),
                ("fluid_voice_update_param", [_VP, ctypes.c_int], None)]  # fmt: skip
        functions = []
        for name, argtypes, restype in bind:
            function = getattr(lib, name)
            function.argtypes, function.restype = argtypes, restype
            functions.append(function)
        (self._list, self._channel, self._key, self._is_on, self._gen_get, self._gen_set,
         self._update) = functions  # fmt: skip
        self.choked = 0  # voices shortened since the synth was made

    def choke(self, channel: int, key: int, released_frames: int) -> None:
        """End, `FADE_SECONDS` from now, the voices of `channel`'s `key` that were released
        `released_frames` ago and would ring on longer."""
        seconds = max(0, released_frames) / self._rate + FADE_SECONDS
        release = 1200.0 * math.log2(seconds)  # timecents, counted from the note-off
        self._list(self._synth, self._voices, _MAX_VOICES, -1)
        for voice in self._voices:
            if not voice:
                break  # the list ends with a null
            if (self._key(voice) != key or self._channel(voice) != channel
                    or self._is_on(voice)):  # fmt: skip
                continue
            if self._gen_get(voice, _GEN_VOLENVRELEASE) > release:
                self._gen_set(voice, _GEN_VOLENVRELEASE, release)
                self._update(voice, _GEN_VOLENVRELEASE)
                self.choked += 1


def choke_events(spans: list[list[int]], loop_frames: int, rate: int) -> list[tuple]:
    """(frame, CHOKE, key, frames since the key's previous note-off) for every note of `spans`
    ([on, off, key, velocity], by onset, a key's notes never overlapping) that strikes a key
    again within `WINDOW_SECONDS`, its first note also as struck again by the next time round
    the loop (in the render's tail, which is folded onto the loop's start)."""
    window = WINDOW_SECONDS * rate
    last_off: dict[int, int] = {}
    first_on: dict[int, int] = {}
    events = []
    for on, off, key, _ in spans:
        if key in last_off and on - last_off[key] <= window:
            events.append((on, CHOKE, key, on - last_off[key]))
        first_on.setdefault(key, on)
        last_off[key] = off
    for key, on in first_on.items():
        again = on + loop_frames
        if 0 <= again - last_off[key] <= window:
            events.append((again, CHOKE, key, again - last_off[key]))
    return events
