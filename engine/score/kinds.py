"""The graph's words for how a change happens: exit points, entries, fade curves, stinger
quantization, and what a second transition does while one waits. Each is a `StrEnum`: it
reads and prints as the word a designer writes in the YAML."""

from __future__ import annotations

from enum import StrEnum


class Exit(StrEnum):
    """Where a transition leaves the playing music (or at a named cue of the source state)."""

    IMMEDIATE = "immediate"
    NEXT_BEAT = "next_beat"
    NEXT_BAR = "next_bar"
    LOOP_END = "loop_end"


class Entry(StrEnum):
    """Where the destination's loop starts playing from."""

    START = "start"
    SAME_POSITION = "same_position"
    SAME_BEAT = "same_beat"


class Curve(StrEnum):
    LINEAR = "linear"
    EQUAL_POWER = "equal_power"
    S_CURVE = "s_curve"


class Quantize(StrEnum):
    """Where a stinger lands: at once, on the next beat, on the next bar."""

    NONE = "none"
    BEAT = "beat"
    BAR = "bar"


class WhilePending(StrEnum):
    """What a second transition does while this one waits for its exit point."""

    REPLACE = "replace"
    QUEUE = "queue"
    IGNORE = "ignore"


# A cue may not take one of these names: the clock would read it as that grid.
RESERVED_CUE_NAMES = frozenset({*Exit, *Quantize})
