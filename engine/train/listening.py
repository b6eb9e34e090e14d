"""The loops as a listener hears them, beside real game music.

    python -m engine.train listen [--loops 20] [--model PATH] [--out models/]

Every measure here is taken from the notes alone, by definitions that don't know how a loop
was made (the generator's own controls and priors play no part):

- **key as heard**: Krumhansl-Kessler key finding over the duration-weighted pitch classes
  of the pitched parts, the bass counted twice; compared with the key the state asked for
  (tonic and mode), and the mode alone;
- **empty beats**: the share of the listener's beats (a quarter note in x/4, a dotted
  quarter in 6/8, 9/8 and 12/8, an eighth in other x/8) with no onset in any part;
- **notes per bar**: every onset, drums included, per bar (median per density);
- **pitch-class entropy** (bits) and **scale consistency** (the largest share of pitched
  notes inside one major or natural-minor scale), as muspy defines them;
- **polyphony at onsets**: pitched notes sounding at each pitched onset, on average;
- **pad chords**: the share of the pad's sounding time with two or more pad notes sounding;
- **each part**: its notes per bar, and its register (the median MIDI pitch of its notes),
  over the loops (or windows) where it plays.

Three makers on twelve state specs that nothing was tuned on (`SPECS`: keys, meters, tempi,
densities and moods none of statemachines/game.yaml's), 20 loops each (over six a spec, a key rate
moves by several points from one set of seeds to the next): the model alone
(no priors, no guarantees), the model as Segue ships it, and the rule-based fallback; beside
the same measures on held-out game music (Freedoom's level music in the data's val and test
splits, in 8-bar windows). engine/train/listening_report.py writes LISTENING.md,
listening.json and listening.png (piano rolls side by side) to `--out`; `--tuning` prints the
same table for `TUNING_SPECS`, the eight specs the decoding's frame (harmony, pad chords,
pulse) was tuned on, and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.score.music import PARTS, PITCH_NAMES, Instrument, LoopSpec, Meter, Note

# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
REAL_WINDOW_BARS = 8
SHEET_SPEC = "festival"  # the piano-roll sheet's loops: a full four-part request

DRUMS = Instrument("standard", 0, True)
GM = {"bass": 33, "pad": 48, "lead": 73}


def _spec(name, mood, mode, tonic, tempo, meter, density, parts, programs=()) -> LoopSpec:
    chosen = dict(GM) | dict(programs)
    instruments = tuple((p, DRUMS if p == "drums" else Instrument(p, chosen[p])) for p in parts)
    return LoopSpec(state=name, mood=mood, mode=mode, tonic=PITCH_NAMES.index(tonic),
                    tempo_bpm=tempo, meter=Meter(*meter), bars=4, instruments=instruments,
                    density=density)  # fmt: skip


FULL = ("drums", "bass", "pad", "lead")
TRIO = ("bass", "pad", "lead")
# Held out: no key, meter and tempo of these is in statemachines/game.yaml, and no prior or
# decoding setting was tuned on them.
SPECS: tuple[LoopSpec, ...] = (
    _spec("tavern", "happy", "major", "D", 132, (6, 8), "medium", FULL, {"lead": 22}),
    _spec("crypt", "mysterious", "minor", "C#", 66, (4, 4), "low", TRIO),
    _spec("chase", "tense", "minor", "F", 168, (4, 4), "high", FULL, {"lead": 30}),
    _spec("meadow", "peaceful", "major", "G", 76, (3, 4), "low", ("pad", "lead"), {"lead": 74}),
    _spec("forge", "angry", "minor", "Bb", 120, (4, 4), "high", FULL, {"bass": 38}),
    _spec("harbor", "calm", "major", "Eb", 92, (6, 8), "medium", FULL, {"pad": 89}),
    _spec("ruins", "sad", "minor", "E", 60, (3, 4), "medium", TRIO, {"lead": 71}),
    _spec("festival", "excited", "major", "A", 144, (4, 4), "high", FULL, {"lead": 56}),
    _spec("swamp", "dark", "minor", "Ab", 84, (6, 8), "low", FULL, {"pad": 95}),
    _spec("summit", "triumphant", "major", "B", 108, (4, 4), "medium", FULL, {"lead": 60}),
    _spec("lab", "scary", "minor", "D", 100, (3, 4), "high", FULL, {"pad": 92}),
    _spec("dawn", "dreamy", "major", "F#", 70, (4, 4), "medium", TRIO),
)  # fmt: skip

# Where the decoding's frame (harmony, pad chords, pulse: engine.making.priors) was tuned:
# keys, meters and tempi of their own. `python -m engine.train listen --tuning` measures them.
TUNING_SPECS: tuple[LoopSpec, ...] = (
    _spec("d1", "happy", "major", "C", 96, (4, 4), "medium", FULL),
    _spec("d2", "sad", "minor", "G", 72, (4, 4), "low", TRIO),
    _spec("d3", "tense", "minor", "B", 150, (4, 4), "high", FULL),
    _spec("d4", "calm", "major", "F", 88, (3, 4), "medium", ("pad", "lead")),
    _spec("d5", "dark", "minor", "A", 112, (6, 8), "medium", FULL),
    _spec("d6", "triumphant", "major", "E", 126, (4, 4), "high", FULL),
    _spec("d7", "mysterious", "minor", "F#", 80, (3, 4), "low", FULL),
    _spec("d8", "peaceful", "major", "Bb", 64, (6, 8), "low", TRIO),
)  # fmt: skip


@dataclass(frozen=True)
class Excerpt:
    """Notes to measure: a generated loop, or a window of real music (no request)."""

    notes: tuple[Note, ...]
    bar_quarters: float
    beat_quarters: float
    bars: int
    requested: tuple[int, str] | None = None  # (tonic, mode)
    density: str | None = None
    wraps: bool = True  # a loop: a note past the end sounds on from the start

    @property
    def quarters(self) -> float:
        return self.bar_quarters * self.bars

    def sounding(self) -> list[Note]:
        """The notes as they sound within the excerpt: cut at its end, or wrapped round."""
        out = []
        for n in self.notes:
            end = n.start_beats + n.duration_beats
            out.append(replace(n, duration_beats=min(end, self.quarters) - n.start_beats))
            if self.wraps and end > self.quarters:
                rest = min(end - self.quarters, self.quarters)
                out.append(replace(n, start_beats=0.0, duration_beats=rest))
        return out


def listener_beat(meter: Meter) -> float:
    """The beat a listener taps, in quarter notes."""
    if meter.beat_unit == 8:
        return 1.5 if meter.beats_per_bar % 3 == 0 else 0.5
    return 4 / meter.beat_unit


def of_loop(loop) -> Excerpt:
    spec = loop.spec
    return Excerpt(tuple(loop.notes), spec.beats / spec.bars, listener_beat(spec.meter),
                   spec.bars, (spec.tonic, spec.mode), spec.density)  # fmt: skip


# -- the measures --------------------------------------------------------------------------


def key_as_heard(notes) -> tuple[int, str]:
    """Krumhansl-Kessler: the key whose profile best correlates with the duration-weighted
    pitch-class histogram of the pitched notes, the bass counted twice."""
    hist = np.zeros(12)
    for n in notes:
        if n.part != "drums":
            hist[n.pitch % 12] += n.duration_beats * (2 if n.part == "bass" else 1)
    best, key = -2.0, (0, "major")
    if hist.std() == 0:  # no pitch, or every pitch class alike: no key to hear
        return key
    for mode, profile in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        for tonic in range(12):
            r = np.corrcoef(hist, np.roll(profile, tonic))[0, 1]
            if r > best:
                best, key = r, (tonic, mode)
    return key


def sounding_time(notes, at_least: int) -> float:
    """Time (quarters) during which `at_least` of `notes` sound together."""
    edges = sorted([(n.start_beats, 1) for n in notes] +
                   [(n.start_beats + n.duration_beats, -1) for n in notes])  # fmt: skip
    total, level, last = 0.0, 0, None
    for t, step in edges:
        if last is not None and level >= at_least:
            total += t - last
        level += step
        last = t
    return total


def repetition(notes, bar_quarters: float, bars: int, by_pitch: bool) -> float | None:
    """How much each bar repeats one of the two before it: the Jaccard overlap of their onsets
    on a 16th grid (with the pitch or drum key when `by_pitch`), the better of the two, averaged
    over the bars from the second on that play (a silent bar is no repeat, nor is one after
    it). A groove that holds reads near 1; onsets drawn afresh each bar, near 0. None when no
    bar from the second on plays."""
    steps_in_bar = round(bar_quarters * 4)
    grid = [set() for _ in range(bars)]
    for n in notes:
        # An onset just before a bar line (real music is not quantised) rounds into the next bar.
        bar, step = divmod(round(n.start_beats * 4), steps_in_bar)
        if 0 <= bar < bars:
            grid[bar].add((step, n.pitch) if by_pitch else step)
    scores = [max(len(grid[b] & grid[a]) / len(grid[b] | grid[a]) for a in range(max(0, b - 2), b))
              for b in range(1, bars) if grid[b]]  # fmt: skip
    return float(np.mean(scores)) if scores else None


def pitch_classes(pitched) -> tuple[float, float]:
    """Pitch-class entropy (bits) and scale consistency of these notes, by note count."""
    counts = np.bincount([n.pitch % 12 for n in pitched], minlength=12).astype(float)
    p = counts / counts.sum() if counts.sum() else counts
    entropy = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
    consistency = max(
        (sum(counts[(t + s) % 12] for s in scale) / counts.sum() if counts.sum() else 0.0)
        for scale in SCALES.values() for t in range(12)
    )  # fmt: skip
    return entropy, consistency


def measures(x: Excerpt) -> dict:
    sounding = x.sounding()
    pitched = [n for n in x.notes if n.part != "drums"]
    length = x.quarters
    beats = max(1, round(length / x.beat_quarters))
    onset_beats = {int(n.start_beats // x.beat_quarters) for n in x.notes if n.start_beats < length}
    entropy, consistency = pitch_classes(pitched)
    onsets = sorted({n.start_beats for n in pitched})
    heard = [n for n in sounding if n.part != "drums"]
    polyphony = [sum(1 for n in heard if n.start_beats <= t < n.start_beats + n.duration_beats)
                 for t in onsets]  # fmt: skip
    pad = [n for n in sounding if n.part == "pad"]
    pad_sounding = sounding_time(pad, 1)
    out = {
        "empty_beats": 1 - len(onset_beats) / beats,
        "notes_per_bar": len(x.notes) / x.bars,
        "pc_entropy": entropy,
        "scale_consistency": consistency,
        "polyphony": float(np.mean(polyphony)) if polyphony else 0.0,
        "pad_chords": sounding_time(pad, 2) / pad_sounding if pad_sounding else None,
        "rhythm_repeats": repetition(x.notes, x.bar_quarters, x.bars, by_pitch=False),
        "groove_repeats": repetition(
            [n for n in x.notes if n.part == "drums"], x.bar_quarters, x.bars, by_pitch=True
        ),  # fmt: skip
        "parts": {
            part: {
                "notes_per_bar": len(ns) / x.bars,
                "register": float(np.median([n.pitch for n in ns])),
            }
            for part in PARTS
            if (ns := [n for n in x.notes if n.part == part])
        },
    }
    if x.requested is not None:
        key = key_as_heard(sounding)
        out |= {"key_heard": float(key == x.requested),
                "mode_heard": float(key[1] == x.requested[1]),
                "heard": f"{PITCH_NAMES[key[0]]} {key[1]}"}  # fmt: skip
    return out


RATES = ("key_heard", "mode_heard", "empty_beats", "pad_chords")
OTHERS = ("pc_entropy", "scale_consistency", "polyphony")


def summary(rows: list[dict], densities: list[str | None]) -> dict:
    def values(key):
        return [r[key] for r in rows if r.get(key) is not None]

    out = {key: float(np.mean(values(key))) if values(key) else None
           for key in ("key_heard", "mode_heard", "pad_chords", "rhythm_repeats",
                       "groove_repeats")}  # fmt: skip
    out |= {key: float(np.median(values(key))) if values(key) else None
            for key in ("empty_beats", *OTHERS)}  # fmt: skip
    out["empty_beats_mean"] = (
        float(np.mean(values("empty_beats"))) if values("empty_beats") else None
    )
    out["notes_per_bar"] = {
        d: float(np.median([r["notes_per_bar"] for r, dd in zip(rows, densities, strict=True)
                            if dd == d or d == "all"]))
        for d in ("low", "medium", "high", "all")
        if any(dd == d or d == "all" for dd in densities)
    }  # fmt: skip
    out["parts"] = {
        part: {key: float(np.median([r["parts"][part][key] for r in rows if part in r["parts"]]))
               for key in ("notes_per_bar", "register")}
        for part in PARTS if any(part in r["parts"] for r in rows)
    }  # fmt: skip
    out["loops"] = len(rows)
    return out


# -- makers and real music -------------------------------------------------------------------


def makers(model: Path | None) -> dict:
    """name → generate(spec): the model alone, the model as shipped, the rule fallback."""
    from engine.making.model import ModelGenerator, Sampling
    from engine.making.rules import RuleGenerator
    from engine.train.evaluate import NO_GUARANTEES, NO_PRIORS

    alone = ModelGenerator.load(model, sampling=Sampling(**NO_PRIORS, **NO_GUARANTEES))
    shipped = ModelGenerator.load(model, sampling=Sampling())
    return {"model alone": alone.generate, "shipped": shipped.generate,
            "rules": RuleGenerator().generate}  # fmt: skip


def real_tracks() -> list:
    """Held-out game music: Freedoom's level music in the val and test splits, whole."""
    from engine.train.data import FREEDOOM_WADS, read_midi, split_of
    from engine.train.wad import midi_lumps

    out = []
    for wad in FREEDOOM_WADS:
        if not Path(wad).is_file():
            continue
        for name, body in midi_lumps(wad).items():
            piece_id = f"freedoom/{Path(wad).stem}/{name}"
            if split_of(piece_id) == "train":
                continue
            piece = read_midi(body, piece_id, "freedoom")
            if piece is not None and piece.bars:
                out.append(piece)
    return out


def real_excerpts(pieces: list) -> list[Excerpt]:
    """The pieces (from `real_tracks`) in 8-bar windows, silent stretches left out."""
    out = []
    for piece in pieces:
        beats_per_bar, unit = (int(v) for v in piece.bars[0][1].split("/"))
        bar = beats_per_bar * 4 / unit
        span = bar * REAL_WINDOW_BARS
        end = max(n.start_beats for n in piece.notes)
        for start in np.arange(0.0, end - span, span):
            notes = tuple(replace(n, start_beats=n.start_beats - start) for n in piece.notes
                          if start <= n.start_beats < start + span)  # fmt: skip
            if len(notes) >= REAL_WINDOW_BARS:  # not a silent stretch
                out.append(Excerpt(notes, bar, listener_beat(Meter(beats_per_bar, unit)),
                                   REAL_WINDOW_BARS, wraps=False))  # fmt: skip
    return out


def evaluate(model: Path | None = None, loops: int = 20, tuning: bool = False) -> dict:
    """The held-out specs (seeds from 1000), or with `tuning` the tuning specs (from 500)."""
    from tqdm import tqdm

    specs, seed0 = (TUNING_SPECS, 500) if tuning else (SPECS, 1000)
    result: dict = {"specs": [s.state for s in specs], "loops_per_spec": loops, "makers": {},
                    "held_out": not tuning}  # fmt: skip
    sheets: dict[str, list] = {}
    jobs = [(name, make, spec, seed) for name, make in makers(model).items()
            for spec in specs for seed in range(loops)]  # fmt: skip
    rows: dict[str, list] = {}
    for name, make, spec, seed in tqdm(jobs, desc="loops", unit="loop"):
        loop = make(replace(spec, seed=seed0 + seed))
        m = measures(of_loop(loop)) | {"spec": spec.state, "seed": seed0 + seed}
        rows.setdefault(name, []).append((m, spec.density))
        if spec.state == SHEET_SPEC and seed == 0:
            sheets[f"{name}: {spec.state} ({spec.meter}, {spec.density})"] = of_loop(loop)
    for name, pairs in rows.items():
        result["makers"][name] = {
            "overall": summary([m for m, _ in pairs], [d for _, d in pairs]),
            "per_spec": {s.state: summary([m for m, _ in pairs if m["spec"] == s.state],
                                          [d for m, d in pairs if m["spec"] == s.state])
                         for s in specs},
            "loops": [m for m, _ in pairs],
        }  # fmt: skip
    tracks = real_tracks()
    real = real_excerpts(tracks)
    result["real"] = summary([measures(x) for x in real], [None] * len(real))
    result["real"]["source"] = "Freedoom 1 and 2 level music, val and test splits, 8-bar windows"
    # The same tracks whole: a track modulates and borrows where an 8-bar window seldom does.
    pitched = [[n for n in piece.notes if n.part != "drums"] for piece in tracks]
    stats = [pitch_classes(notes) for notes in pitched if notes]
    result["real_whole"] = {
        "tracks": len(stats),
        "pc_entropy": float(np.median([e for e, _ in stats])) if stats else None,
        "scale_consistency": float(np.median([c for _, c in stats])) if stats else None,
    }
    if real:
        sheets["real game music: Freedoom, held out (8 bars)"] = real[len(real) // 2]
    result["_sheets"] = sheets
    return result
