"""A state's own settings in a graph file, checked: mood, key, tempo, meter, bars,
instruments, motif, cues, layers and mix. Part of the validator (engine/score/load.py)."""

import re
from dataclasses import replace

from engine.score import gm, graph_spec
from engine.score.graph import Layering, State
from engine.score.kinds import RESERVED_CUE_NAMES
from engine.score.music import (
    DENSITIES,
    MODES,
    MOODS,
    PARTS,
    PITCH_NAMES,
    Meter,
    Note,
    Sends,
)
from engine.score.units import quarters_per_bar
from engine.score.yamlmarks import Mark, Marked, MarkedList

_TONICS = {name: i for i, name in enumerate(PITCH_NAMES)} | {
    "Db": 1, "D#": 3, "Gb": 6, "G#": 8, "A#": 10, "Cb": 11, "E#": 5, "Fb": 4, "B#": 0,
}  # fmt: skip


class StateChecks:
    """The validator's checks of one state (it provides fail, mapping, known_keys and the
    key tables)."""

    def state(self, name: str, body, mark: Mark, defaults: Marked, sends: Sends | None = None,
              partial: bool = False) -> State:  # fmt: skip
        """A state's settings over the defaults (and its `mix:` over `sends`); `partial`: the
        defaults themselves (no instruments needed)."""
        body = self.mapping(body, mark, f"state {name!r}")
        self.known_keys(body, self.STATE, f"state {name!r}")

        def get(key, default=None):
            if key in body:
                return body[key], body.value_mark(key)
            if key in defaults:
                return defaults[key], defaults.value_mark(key)
            return default, mark

        mood, m = get("mood", "calm")
        if mood not in MOODS:
            self.fail(m, f"unknown mood {mood!r}; expected one of {', '.join(MOODS)}")
        mode, m = get("mode", None)
        key, km = get("key", "C")
        tonic, key_mode = self.key(key, km)
        mode = mode or key_mode or "major"
        if mode not in MODES:
            self.fail(m, f"unknown mode {mode!r}; expected major or minor")
        tempo, m = get("tempo", 120)
        if not _number(tempo) or not 30 <= tempo <= 300:
            self.fail(m, f"tempo must be a number of BPM in 30..300, got {tempo!r}")
        meter_text, m = get("meter", "4/4")
        meter = self.meter(meter_text, m)
        bars, bm = get("bars", None)
        if bars is not None:
            if not isinstance(bars, int) or isinstance(bars, bool) or not 1 <= bars <= 64:
                self.fail(bm, f"bars must be a whole number 1..64, got {bars!r}")
        else:
            seconds, m = get("loop_seconds", 8)
            if not _number(seconds) or not 1 <= seconds <= 120:
                self.fail(m, f"loop_seconds must be a number 1..120, got {seconds!r}")
            bar_seconds = quarters_per_bar(meter) * 60.0 / tempo
            bars = max(1, round(seconds / bar_seconds))
        instruments_doc, m = get("instruments", None)
        if instruments_doc is None and partial:
            instruments_doc = Marked({"pad": "strings"})
        if instruments_doc is None:
            self.fail(mark, f"state {name!r} has no instruments; expected e.g. "
                      "{pad: strings, bass: acoustic_bass}")  # fmt: skip
        instruments_doc = self.mapping(instruments_doc, m, "instruments")
        instruments = []
        for part in PARTS:  # canonical part order = stem order
            if part in instruments_doc:
                try:
                    instruments.append((part, gm.instrument(part, instruments_doc[part])))
                except ValueError as exc:
                    self.fail(instruments_doc.value_mark(part), str(exc))
        for part in instruments_doc:
            if part not in PARTS:
                self.fail(
                    instruments_doc.key_mark(part),
                    f"unknown part {part!r}; expected one of {', '.join(PARTS)}",
                )
        if not instruments:
            self.fail(m, "instruments is empty; expected at least one part")
        density, m = get("density", "medium")
        if density not in DENSITIES:
            self.fail(m, f"unknown density {density!r}; expected one of {', '.join(DENSITIES)}")
        repeats, m = get("repeats", 2)
        if not isinstance(repeats, int) or isinstance(repeats, bool) or not 1 <= repeats <= 64:
            self.fail(m, f"repeats must be a whole number 1..64, got {repeats!r}")
        once, m = get("once", False)
        if not isinstance(once, bool):
            self.fail(m, f"once must be true or false, got {once!r}")
        nxt, m = get("next", None)
        if nxt is not None and not isinstance(nxt, str):
            self.fail(m, f"next must be a state name, got {nxt!r}")
        motif_path, m = get("motif", None)
        motif = self.motif(motif_path, m, tonic) if motif_path is not None else ()
        loop_beats = bars * meter.beats_per_bar  # cues count meter beats, as the clock does
        cues = self.cues(body.get("cues", Marked()), body.value_mark("cues"), loop_beats)
        layers = self.layers(body.get("layers", Marked()), body.value_mark("layers"),
                             [p for p, _ in instruments])  # fmt: skip
        sends = sends or Sends()
        if isinstance(body, Marked) and "mix" in body:
            sends = self.sends(body["mix"], body.value_mark("mix"), sends)
        return State(name=name, mood=mood, mode=mode, tonic=tonic, tempo_bpm=float(tempo),
                     meter=meter, bars=bars, instruments=tuple(instruments), density=density,
                     repeats=repeats, once=once, next=nxt, motif=motif, cues=cues,
                     layers=layers, mark=mark, sends=sends)  # fmt: skip

    def sends(self, doc, mark: Mark, base: Sends) -> Sends:
        """`mix: {reverb: 0.3, chorus: 0.1}`: each key, 0..1, overrides `base`."""
        if doc is None:
            return base
        doc = self.mapping(doc, mark, "mix")
        self.known_keys(doc, self.MIX, "mix")
        values = {}
        for key in doc:
            value = doc[key]
            if not _number(value) or not 0 <= value <= 1:
                self.fail(doc.value_mark(key), f"mix {key} must be a number 0..1, got {value!r}")
            values[key] = float(value)
        return replace(base, **values)

    def cues(self, doc, mark: Mark, loop_beats: float) -> tuple[tuple[str, float], ...]:
        doc = self.mapping(doc, mark, "cues")
        out = []
        for name, beats in doc.items():
            if name in RESERVED_CUE_NAMES:
                self.fail(doc.key_mark(name), f"cue name {name!r} is an exit or quantize kind "
                          f"({', '.join(sorted(RESERVED_CUE_NAMES))}); pick another")  # fmt: skip
            if not _number(beats) or not 0 <= beats < loop_beats:
                self.fail(doc.value_mark(name), f"cue {name!r} must be meter beats from the loop "
                          f"start in 0..{loop_beats:g}, got {beats!r}")  # fmt: skip
            out.append((name, float(beats)))
        return tuple(out)

    def layers(self, doc, mark: Mark, parts: list[str]) -> tuple[Layering, ...]:
        doc = self.mapping(doc, mark, "layers")
        out = []
        for part, spec in doc.items():
            if part not in parts:
                self.fail(doc.key_mark(part), f"layer {part!r} is not a part of this state; "
                          f"expected one of {', '.join(parts)}")  # fmt: skip
            spec = self.mapping(spec, doc.value_mark(part), f"layer {part!r}")
            self.known_keys(spec, self.LAYER, f"layer {part!r}")
            param = spec.get("param")
            if not isinstance(param, str):
                self.fail(spec.mark, f"layer {part!r} needs param: the parameter it follows")
            curve = spec.get("curve", [[0, 0], [1, 1]])
            points = []
            if isinstance(curve, list):
                for point in curve:
                    if (
                        isinstance(point, list)
                        and len(point) == 2
                        and all(map(_number, point))
                        and 0 <= point[1] <= 1
                    ):
                        points.append((float(point[0]), float(point[1])))
            xs = [x for x, _ in points]
            if len(points) < 2 or len(points) != len(curve) or xs != sorted(set(xs)):
                self.fail(
                    spec.value_mark("curve"),
                    "curve must be a list of [value, gain] points "
                    "with increasing values and gains in 0..1, e.g. [[0, 0], [0.6, 1]]",
                )
            out.append(Layering(part, param, tuple(points)))
        return tuple(out)

    def key(self, key, mark: Mark) -> tuple[int, str | None]:
        match = re.fullmatch(graph_spec.KEY_PATTERN, str(key))
        if not match:
            self.fail(mark, f"key must be a note name such as D, F# or Bb minor, got {key!r}")
        name = match.group(1)[0].upper() + match.group(1)[1:]
        return _TONICS[name], match.group(2)

    def meter(self, text, mark: Mark) -> Meter:
        match = re.fullmatch(graph_spec.METER_PATTERN, str(text))
        if not match or int(match.group(2)) not in (2, 4, 8) or not 1 <= int(match.group(1)) <= 16:
            self.fail(mark, f"meter must look like 4/4, 3/4 or 6/8, got {text!r}")
        return Meter(int(match.group(1)), int(match.group(2)))

    def motif(self, value, mark: Mark, tonic: int) -> tuple[Note, ...]:
        from engine.score.motif import MotifError, read_motif

        if not isinstance(value, str):
            self.fail(mark, f"motif must be a path to a .mid file, got {value!r}")
        path = (self.base_dir / value).resolve()
        if not path.is_relative_to(self.base_dir):
            self.fail(mark, f"motif {value!r} is outside the graph's folder {self.base_dir}")
        try:
            return read_motif(path, tonic)
        except MotifError as exc:
            self.fail(mark, f"motif {value!r}: {exc}")


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind(value) -> str:
    if value is None:
        return "nothing"
    kinds = {str: "text", int: "a number", float: "a number", bool: "true/false",
             list: "a list", MarkedList: "a list"}  # fmt: skip
    return kinds.get(type(value), type(value).__name__)
