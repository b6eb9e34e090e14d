"""The graph file's vocabulary as tables: the keys each mapping takes, in the order errors list
them, the words of each closed set, the text patterns, and what each value looks like.

The validator (engine/score/load.py) checks keys, words and patterns against these tables and
everything else in code; engine/tools/schema.py turns the same tables into the JSON Schema that
YAML editors use. A key added here is known to both; the shapes below are what the schema
promises, and tests/test_schema.py holds them against the validator at their bounds.
"""

from __future__ import annotations

from engine.score import gm
from engine.score.kinds import RESERVED_CUE_NAMES, Curve, Entry, Exit, Quantize, WhilePending
from engine.score.music import DENSITIES, MODES, MOODS, PARTS

# Closed sets of words (engine/score/kinds.py).
EXITS = tuple(Exit)
ENTRIES = tuple(Entry)
CURVES = tuple(Curve)
PENDING = tuple(WhilePending)  # a second transition while one waits for its exit
QUANTIZE = tuple(Quantize)  # a stinger's grid
CUE_NAMES_TAKEN = RESERVED_CUE_NAMES  # a cue named like a grid would read as that grid
GM_NAMES = (*gm.PROGRAMS, *gm.ALIASES)

# Text patterns, matched whole (re.fullmatch); also valid ECMA-262 for the schema.
KEY_PATTERN = r"\s*([A-Ga-g][#b]?)\s*(major|minor)?\s*"
METER_PATTERN = r"\s*(\d+)\s*/\s*(\d+)\s*"
LENGTH_PATTERN = r"\s*(\d+(?:\.\d+)?)\s*(s|sec|seconds?|ms|beats?|bars?)\s*"
DUCK_PATTERN = r"\s*(-?\d+(?:\.\d+)?)\s*dB\s*"
WHEN_PATTERN = r"\s*([A-Za-z_]\w*)\s*([<>])\s*(-?\d+(?:\.\d+)?)\s*"
STATE_NAME_PATTERN = r"[A-Za-z_][\w-]*"


# -- value shapes (JSON Schema fragments) ---------------------------------------------------


def number(low: float | None = None, high: float | None = None, doc: str = "") -> dict:
    shape: dict = {"type": "number"}
    if low is not None:
        shape["minimum"] = low
    if high is not None:
        shape["maximum"] = high
    return _doc(shape, doc)


def whole(low: int | None = None, high: int | None = None, doc: str = "") -> dict:
    return number(low, high, doc) | {"type": "integer"}


def words(names, doc: str = "") -> dict:
    return _doc({"enum": [str(name) for name in names]}, doc)  # plain text, also for enums


def text(pattern: str | None = None, doc: str = "") -> dict:
    shape: dict = {"type": "string"}
    if pattern is not None:
        shape["pattern"] = f"^(?:{pattern})$"
    return _doc(shape, doc)


def length(doc: str) -> dict:
    """Seconds as a number, or text such as 0.5s, 250ms, 1 beat, 2 bars."""
    return _doc({"anyOf": [{"type": "number"}, text(LENGTH_PATTERN)]},
                f"{doc}: a number of seconds or e.g. 0.5s, 250ms, 1 beat, 2 bars")  # fmt: skip


def ref(section: str, doc: str = "") -> dict:
    return _doc({"$ref": f"#/definitions/{section}"}, doc)


def _doc(shape: dict, doc: str) -> dict:
    return shape | {"description": doc} if doc else shape


# -- the mappings: key → shape, in the order error messages list the keys ------------------

GRAPH = {
    "version": _doc({"const": 1}, "the file format's version: 1"),
    "initial": text(doc="the state that plays first (default: the first state)"),
    "defaults": ref("defaults", "settings every state starts from"),
    "states": ref("states", "the states, by name"),
    "transitions": ref("transitions", "rules: on an event or a condition, go to a state"),
    "parameters": ref("parameters", "continuous values the game sets, by name"),
    "stingers": ref("stingers", "short MIDI phrases played over the music, by name"),
    "mix": ref("mix", "reverb and chorus for every state"),
}

STATE = {
    "mood": words(MOODS, "the feeling the loops aim for"),
    "mode": words(MODES, "major or minor (default: the key's, else major)"),
    "key": text(KEY_PATTERN, "the tonic: a note name such as D, F# or Bb minor"),
    "tempo": number(30, 300, "beats per minute"),
    "meter": text(METER_PATTERN, "time signature such as 4/4, 3/4 or 6/8"),
    "bars": whole(1, 64, "loop length in bars (overrides loop_seconds)"),
    "loop_seconds": number(1, 120, "loop length in seconds, rounded to whole bars"),
    "instruments": ref("instruments", "a General MIDI sound per part"),
    "density": words(DENSITIES, "how many notes"),
    "repeats": whole(1, 64, "plays of one loop before a fresh one"),
    "once": _doc({"type": "boolean"}, "one loop, then `next`"),
    "next": text(doc="the state after a `once` state"),
    "motif": text(doc="a .mid file (relative to the graph) the lead develops"),
    "cues": ref("cues", "named exit points in beats from the loop start"),
    "layers": ref("layers", "parts whose gain follows a parameter"),
    "mix": ref("mix", "this state's reverb and chorus"),
}

MIX = {
    "reverb": number(0, 1, "reverb send 0..1"),
    "chorus": number(0, 1, "chorus send 0..1"),
}

LAYER = {
    "param": text(doc="the parameter this part follows"),
    "curve": _doc(
        {
            "type": "array",
            "minItems": 2,
            "items": {
                "type": "array",
                "items": [number(), number(0, 1)],
                "minItems": 2,
                "maxItems": 2,
            },
        },
        "[value, gain] points, values increasing, gains 0..1, e.g. [[0, 0], [0.6, 1]]",
    ),  # fmt: skip
}

TRANSITION = {
    "from": text(doc="a state, or 'any'"),
    "on": _doc({"type": "string", "minLength": 1}, "the event that fires this rule"),
    "when": text(WHEN_PATTERN, "a condition such as 'intensity > 0.8'"),
    "hysteresis": number(0, doc="how far back past the threshold re-arms the condition"),
    "to": text(doc="the destination state"),
    "exit": _doc(
        {"anyOf": [words(EXITS), text(doc="a cue of the source state")]},
        f"when the source stops: {', '.join(EXITS)} or a cue name",
    ),  # fmt: skip
    "entry": words(ENTRIES, "where the destination starts"),
    "fade": length("fade out and in"),
    "fade_out": length("fade out"),
    "fade_in": length("fade in"),
    "curve": words(CURVES, "the crossfade's shape"),
    "priority": whole(doc="the higher wins when two rules match"),
    "while_pending": words(PENDING, "a second transition while this one waits for its exit"),
    "respond": ref("respond", "heard at once while a quantized exit waits"),
    "stinger": text(doc="a stinger played at the exit point"),
    "bridge": _doc(
        {"anyOf": [{"type": "boolean"}, whole(0, 4)]},
        "a generated bridge: true (1 bar) or 1..4 bars",
    ),  # fmt: skip
}

RESPOND = {
    "duck": text(DUCK_PATTERN, "lower the music at once, e.g. -6dB (0 to -60)"),
    "stinger": text(doc="a stinger played at once"),
}

STINGER = {
    "midi": text(doc="a .mid file written in C, relative to the graph"),
    "instrument": words(GM_NAMES, "a General MIDI sound"),
    "quantize": words(QUANTIZE, "the grid it waits for"),
    "cooldown": length("the least time between two plays (in seconds)"),
    "gain_db": number(-60, 12, "level in dB"),
}

PARAMETER = {
    "default": number(doc="the value before the game sets one"),
    "range": _doc(
        {"type": "array", "minItems": 2, "items": [number(), number()]},
        "[low, high] with low < high",
    ),  # fmt: skip
    "smoothing": length("how smoothly stem gains follow it (in seconds)"),
}

# Instruments: the drums take a kit, the other parts a General MIDI name.
INSTRUMENTS = {part: words(gm.DRUM_KITS if part == "drums" else GM_NAMES) for part in PARTS}
