"""Same-key choke: a key struck again on a channel ends what is left of its previous note.

A string, a pipe or a drum head sounds one note at a time: struck again, the new note takes
over from what was still ringing. FluidSynth instead lets a released voice run its whole
release (a string preset's takes over a second to reach -90 dB, a synth pad's four) beside the
new one, so a pad that restrikes its chord every beat keeps three sounding copies of each
note, and the synth spends most of its time on releases far beneath the notes that replaced
them.

The synth knows from its own events when a key is struck again and how long ago its previous
note was released (`choke_events`). At that moment (`strike`) the released voices of that
channel and key keep their own release, so a pad whose new note swells in slowly still
crossfades as the SoundFont made it, until they have fallen `CHOKE_DB` beneath where they
were when the key was struck again (FluidSynth's release falls 96 dB over its length). Then
(`due`) they fade out, over `FADE_SECONDS` at least, and stop: 30 dB and more under a note of
their own pitch. Measured: the level through a restrike within 0.1 dB of FluidSynth alone, the
mix within -57 dB, 12 % fewer voices (tests/test_synth.py, benchmarks/README.md).
"""

from __future__ import annotations

import ctypes
import heapq
import math

CHOKE_DB = 30.0  # a struck-again key's old voices ring on until this far below their level then
FADE_SECONDS = 0.05  # ... and then fade for at least this long, and stop
WINDOW_SECONDS = 6.0  # a key struck again later than this after its note-off is not looked for
_GEN_VOLENVRELEASE = 38  # SoundFont 2.01 generator: release of the volume envelope, timecents
_MAX_VOICES = 256
OFF, CHOKE, ON = 0, 1, 2  # the synth's event kinds, in the order they apply at one frame
_VP = ctypes.c_void_p
_NEVER = 1 << 62


class Choker:
    """Ends the released voices of a struck-again key, through FluidSynth's voice API."""

    def __init__(self, lib, synth: int, sample_rate: int) -> None:
        self._synth = synth
        self._rate = float(sample_rate)
        self._voices = (_VP * _MAX_VOICES)()
        bind = [("fluid_synth_get_voicelist", [_VP, ctypes.POINTER(_VP), ctypes.c_int,
                                               ctypes.c_int], None),
                ("fluid_voice_get_channel", [_VP], ctypes.c_int),
                ("fluid_voice_get_key", [_VP], ctypes.c_int),
                ("fluid_voice_is_on", [_VP], ctypes.c_int),
                ("fluid_voice_get_id", [_VP], ctypes.c_uint),
                ("fluid_voice_gen_get", [_VP, ctypes.c_int], ctypes.c_float),
                ("fluid_voice_gen_set", [_VP, ctypes.c_int, ctypes.c_float], None),
                ("fluid_voice_update_param", [_VP, ctypes.c_int], None)]  # fmt: skip
        functions = []
        for name, argtypes, restype in bind:
            function = getattr(lib, name)
            function.argtypes, function.restype = argtypes, restype
            functions.append(function)
        (self._list, self._channel, self._key, self._is_on, self._id, self._gen_get,
         self._gen_set, self._update) = functions  # fmt: skip
        # (frame to fade out at, voice, its note's id, its release's frames by then)
        self._pending: list[tuple[int, int, int, int]] = []
        self.choked = 0  # voices ended early since the synth was made

    @property
    def next_due(self) -> int:
        """The frame of the next fade-out (a render's frames), or a frame never reached."""
        return self._pending[0][0] if self._pending else _NEVER

    def start(self) -> None:
        """A new render: its frames count from 0, every voice was sounded off."""
        self._pending.clear()

    def strike(self, channel: int, key: int, now: int, released_frames: int) -> None:
        """`channel`'s `key` is struck again at frame `now`, `released_frames` after its last
        note-off: schedule the end of that note's voices, `CHOKE_DB` further down their
        release."""
        self._list(self._synth, self._voices, _MAX_VOICES, -1)
        for voice in self._voices:
            if not voice:
                break  # the list ends with a null
            if (self._key(voice) != key or self._channel(voice) != channel
                    or self._is_on(voice)):  # fmt: skip
                continue
            release = 2.0 ** (self._gen_get(voice, _GEN_VOLENVRELEASE) / 1200.0) * self._rate
            wait = round(CHOKE_DB / 96.0 * release)
            due = (now + wait, voice, self._id(voice), max(0, released_frames) + wait)
            heapq.heappush(self._pending, due)

    def due(self, now: int) -> None:
        """Fade out the voices whose time has come by frame `now`."""
        pending = self._pending
        while pending and pending[0][0] <= now:
            _, voice, note, released = heapq.heappop(pending)
            if self._id(voice) != note or self._is_on(voice):
                continue  # ended, and its voice reused for another note
            # Timecents counted from its note-off; never longer than its own release.
            release = 1200.0 * math.log2(released / self._rate + FADE_SECONDS)
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
