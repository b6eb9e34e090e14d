"""Audio: the mixer, the shared-memory ring and the sinks.

GIL_HELD_FRAMES: the most stereo frames one numpy operation on the audio thread may touch.
numpy lets go of the GIL around any elementwise loop over more than 500 elements, and a
256-frame stereo block is 512: each operation on it handed the GIL to whichever thread
wanted it, and won it back only after that thread's switch interval. Under a flood of OSC
one block of the mixer's thirty-odd operations took up to 12 ms that way, against 0.3 ms
when idle. At 240 frames (480 samples) numpy keeps the GIL, and a block waits for it once,
when the audio thread wakes.
"""

GIL_HELD_FRAMES = 240


def copy_held(dest, source) -> None:
    """dest[:] = source, (frames, channels), in pieces that keep the GIL."""
    for first in range(0, source.shape[0], GIL_HELD_FRAMES):
        dest[first : first + GIL_HELD_FRAMES] = source[first : first + GIL_HELD_FRAMES]
