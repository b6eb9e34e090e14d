"""The decoding's priors: what the model's choices are leaned toward, never forbidden.

`Sampling` holds their strengths (0 turns one off; engine.train.evaluate.NO_PRIORS turns all
off for "the model alone"). Each is a row of logit offsets over the vocabulary, built once and
cached, that engine.making.model adds at the decoding step it concerns:
- scale and third (in ModelGenerator): out-of-scale pitches lower, the mode's third higher;
- density (`log_gaps`, `density_pull`): longer or shorter gaps to the next onset while the
  loop so far is busier or sparser than asked;
- parts: a requested part likelier the longer it rests;
- pulse (`skipped_pulses`): an onset that would leave a whole pulse empty less likely;
- harmony (`chord_plan`, `tones_row`): the loop's chord plan, one chord a bar, that the
  bass's roots, the pad's chords and the lead's strong notes lean on;
- motif (`Development`): after a designer's motif, its part leans to its intervals and pitch
  classes;
- melody (`step_row`): the lead's notes off the pulse lean a step from its last note;
- groove (`Groove`): each bar leans to the onsets of the bar before it, the drums to its
  drums, so a loop keeps a rhythm a player can feel.
`sustain_pad` holds each pad chord until the pad's next chord, legato.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from engine.making.grammar import Event, Grammar
from engine.making.tokens import (
    BAR,
    EOS,
    INST0,
    MAX_BAR_STEPS,
    N_NOTE,
    NOTE0,
    POS0,
    REL_PITCH_HIGH,
    REL_PITCH_LOW,
    STEPS_PER_BEAT,
    VOCAB,
    chord_token,
)
from engine.score.music import PARTS, LoopSpec, Note, scale_of

# Onsets per beat (any part) that the density prior steers toward, inside each bucket of the
# training labels (low < 1.5 <= medium < 3 <= high <= 4 on the 16th grid). "low" at 1.1, not
# 1.0: on the tuning specs 1.0 left a low loop 9.5 notes a bar with 11 % of its beats empty,
# 1.1 gives 10.5 and 9 %; 1.15 and up sent a low request over the 1.5 edge now and then.
# "medium" at 2.8: with the harmony model, 2.1 left a medium loop 18 notes a bar on the tuning
# specs (2.4: 18.5, 2.6: 19.3, 2.8: 20.8), sparser than the model before it (21.6).
DENSITY_TARGETS = {"low": 1.1, "medium": 2.8, "high": 3.6}
DENSITY_GAIN = 3.0  # full pull once the loop is ~30 % off its target

PAD, BASS, LEAD = PARTS.index("pad"), PARTS.index("bass"), PARTS.index("lead")
# Chord plans for four bars, as (root in semitones above the tonic, third in semitones above
# the root): common-practice and game-music progressions. In minor the chord before the
# return is the major dominant (the harmonic minor's leading tone), which a minor key and
# its relative major do not share. Under a chord from outside the scale the scale prior
# follows the chord for its bar (`scale_row`).
_MAJ, _MIN = 4, 3
# Every plan starts on the tonic chord and ends on one that leads back to it (V, or IV for a
# plagal return), so the loop cycles. Game and film music colour a key with chords from outside
# it: the major's minor subdominant (A flat in C), the minor's subtonic (B flat in C minor).
# Each plan alone, tuning specs, 80 loops of its mode (I ii iv V, i III iv V: 160, at the
# sampling below): key as heard (pitch-class entropy).
PROGRESSIONS = {
    "major": (
        ((0, _MAJ), (9, _MIN), (5, _MAJ), (7, _MAJ)),  # I vi IV V      90 % (2.59)
        ((0, _MAJ), (7, _MAJ), (9, _MIN), (5, _MAJ)),  # I V vi IV      95 % (2.62)
        ((0, _MAJ), (2, _MIN), (5, _MAJ), (7, _MAJ)),  # I ii IV V      88 % (2.70)
        ((0, _MAJ), (5, _MAJ), (9, _MIN), (7, _MAJ)),  # I IV vi V      93 % (2.60)
        ((0, _MAJ), (9, _MIN), (5, _MIN), (7, _MAJ)),  # I vi iv V     100 % (2.74)
        ((0, _MAJ), (5, _MAJ), (5, _MIN), (7, _MAJ)),  # I IV iv V      94 % (2.70)
        ((0, _MAJ), (2, _MIN), (5, _MIN), (7, _MAJ)),  # I ii iv V      98 % (2.78)
    ),
    "minor": (
        ((0, _MIN), (8, _MAJ), (5, _MIN), (7, _MAJ)),  # i VI iv V      99 % (2.64)
        ((0, _MIN), (5, _MIN), (8, _MAJ), (7, _MAJ)),  # i iv VI V      98 % (2.62)
        ((0, _MIN), (3, _MAJ), (5, _MIN), (7, _MAJ)),  # i III iv V     99 % (2.70)
        ((0, _MIN), (8, _MAJ), (10, _MAJ), (7, _MAJ)),  # i VI VII V    93 % (2.79)
        ((0, _MIN), (10, _MAJ), (8, _MAJ), (7, _MAJ)),  # i VII VI V    88 % (2.80)
    ),
}
# Dropped: thin plans (I IV V I 2.53 bits, I IV iv I 2.31 end on the tonic; i iv i V 2.56 dwells),
# plans heard in another key: i VI III VII 41 %, I II IV V 73 %, I iii IV V 79 %, i iv VII V 79 %.


@dataclass(frozen=True, slots=True)
class Sampling:
    # The model's own decoding, kept by "model alone": a nucleus of 0.9 at 0.85 keeps it in key
    # (tuning specs, key as heard alone / shipped: 1.0 and 0.95 78 / 96 %, now 87 / 98 %).
    temperature: float = 0.85
    top_p: float = 0.9
    # Subtracted from the logits of out-of-scale pitches: a soft tonic/scale prior (0 = off).
    # The minor's raised seventh is spared: the harmonic minor's leading tone, the third of
    # the major dominant in the chord plans.
    scale_bias: float = 2.0
    # Added to the logits of the mode's third (minor or major, every octave), in every part
    # (0 = off). Off: the chord plan and the pad's chords already say the mode (tuning specs,
    # mode as heard 97 → 100 % without it), and at 1.0 the lead sat on the third for half its
    # notes in minor (54 %; game music's leads move).
    third_bias: float = 0.0
    # Density prior: when the loop so far is busier than requested, log(gap to the next onset,
    # in 16ths) times this (times the log-ratio of densities, within ±1) is added to the
    # next-position choices; when sparser, subtracted (0 = off).
    density_bias: float = 6.0
    # Added to the part token of a requested part, times how long it has rested (up to one
    # bar, one pulse in a high loop: full strength), so every part the state asks for keeps
    # playing (0 = off). Held out, high loops: 28.5 notes a bar with a bar, 35.3 with a pulse.
    parts_bias: float = 8.0
    # Motif development, for the part that states a designer's motif, once it has been
    # stated: added to pitches a motif interval (or its inversion) away from that part's
    # previous note, and to pitches of the motif's pitch classes (0 = off). Combat's lead keeps
    # the motif's pitch classes 81.5 % at 1.0 (as without a motif), 91.7 % at 2.0.
    motif_interval_bias: float = 2.0
    motif_pitch_bias: float = 2.0
    # Harmony first: each loop follows a chord plan, one chord per bar drawn for its mode
    # (`PROGRESSIONS`: from the tonic, back to it through the last bar). Added to the bar's
    # chord root for the bass's first note on a downbeat, and to the bar's chord tones for the
    # pad's first note of an onset and the lead's first note on a pulse (half) (0 = off).
    harmony_bias: float = 8.0
    # The pad is the state's bed: once it has started a note, added to the bar's chord tones
    # above its last note, until it sounds a triad (0 = off).
    pad_chord_bias: float = 10.0
    # ... of which a chord tone the pad already sounds at this onset keeps this share, so a
    # chord fills in its missing tones (the third, that says major or minor) before doubling
    # one: at 1.0 half the pad's chords were open fifths, and a minor loop was often heard as
    # major (tuning specs: mode as heard 91 → 94 %, the pad's chords with their third 51 → 87 %).
    pad_double_share: float = 0.0
    # Melody: added to the pitches a step (one or two semitones) from the lead's previous
    # note, for the lead's first note off the pulse, so between its strong notes (chord tones)
    # the lead moves by step, as a melody's passing and neighbour notes do; a motif's lead
    # follows the motif's intervals instead (`Development`) (0 = off). Tuning
    # specs, the lead's intervals, unison / step / larger: 30 / 10 / 60 % at 0, 25 / 29 / 46 %
    # at 2, 17 / 53 / 30 % at 4; held-out Freedoom leads 21 / 25 / 54 %.
    step_bias: float = 2.0
    # Taken from the next-onset choices once for each pulse (a quarter, or a dotted quarter in
    # 6/8, 9/8, 12/8) they would leave without any onset: the music keeps its pulse (0 = off).
    pulse_bias: float = 2.0
    # Groove: from the second bar, added to the next-onset choices at the positions where the
    # bar before had an onset, and at such a position to the drums and to the drum keys that
    # played there, so the rhythm repeats as a groove does, not note for note (0 = off).
    groove_bias: float = 4.0
    # Hard guarantees of the grammar (engine.making.grammar.Grammar), beyond the loop's shape:
    # at least the requested density bucket's lowest onset rate, and no empty bar.
    density_floor: bool = True
    fill_bars: bool = True


@lru_cache(maxsize=64)
def log_gaps(steps_in_bar: int) -> np.ndarray:
    """[current position + 1, token] → log(16ths from the current position to a next POS or
    to the bar end); zero for other tokens (only position and bar-end tokens are affected)."""
    table = np.zeros((MAX_BAR_STEPS + 1, len(VOCAB)), dtype=np.float32)
    for current in range(-1, steps_in_bar):
        row = table[current + 1]
        for pos in range(current + 1, steps_in_bar):
            row[POS0 + pos] = np.log(pos - current)
        row[BAR] = row[EOS] = np.log(steps_in_bar - current)
    table.flags.writeable = False
    return table


def pulse_steps(meter) -> int:
    """16ths per pulse: a dotted quarter in compound meters (6/8, 9/8, 12/8), else a beat."""
    if meter.beat_unit == 8 and meter.beats_per_bar % 3 == 0:
        return 6
    return max(1, 16 // meter.beat_unit)


@lru_cache(maxsize=64)
def skipped_pulses(steps_in_bar: int, pulse: int) -> np.ndarray:
    """[current position + 1, token] → pulses of the bar a next POS (or the bar's end) would
    leave without an onset after the current position; zero for other tokens."""
    table = np.zeros((MAX_BAR_STEPS + 1, len(VOCAB)), dtype=np.float32)
    pulses = -(-steps_in_bar // pulse)
    for current in range(-1, steps_in_bar):
        row = table[current + 1]
        here = current // pulse if current >= 0 else -1
        for pos in range(current + 1, steps_in_bar):
            row[POS0 + pos] = max(0, pos // pulse - here - 1)
        row[BAR] = row[EOS] = max(0, pulses - 1 - here)
    table.flags.writeable = False
    return table


def chord_plan(mode: str, bars: int, seed: int) -> list[tuple[int, int]]:
    """One chord per bar, (root, third) in semitones: a progression drawn for `seed`, spread
    over the bars (the first bar on the tonic chord, the last on the chord that returns)."""
    plans = PROGRESSIONS["minor" if mode == "minor" else "major"]
    plan = plans[np.random.default_rng([seed, 7]).integers(len(plans))]
    last = len(plan) - 1
    return [plan[round(b * last / (bars - 1)) if bars > 1 else 0] for b in range(bars)]


# The letter (0 = the tonic's, 6 = the leading tone's) of each pitch class above the tonic.
_FLAT_LETTER = (0, 1, 1, 2, 2, 3, 3, 4, 5, 5, 6, 6)  # D, E, A, B flat; F sharp (raised 4th)
_SHARP_LETTER = (0, 0, 1, 1, 2, 3, 3, 4, 4, 5, 5, 6)  # C sharp, G sharp: leading-tone roots


@lru_cache(maxsize=256)
def scale_row(
    mode: str, scale_bias: float, third_bias: float, chord: tuple[int, int, int] | None = None
) -> np.ndarray:
    """Logit offsets of the scale prior: out-of-scale pitches lose `scale_bias`, the mode's
    third gains `third_bias`. The minor's raised seventh is spared (the harmonic minor's leading
    tone), except under a chord that sounds the natural seventh (VII). Under a chord (root,
    third, fifth) borrowed from outside the scale (the major's minor iv), the chord's tones
    count as the scale for that bar and the scale tones they alter as outside it: a melody
    over iv in C sings A flat, not A."""
    inside = set(scale_of(mode)) | ({11} if mode == "minor" else set())
    third = _MIN if mode == "minor" else _MAJ
    if chord is not None:
        root, third_above, fifth_above = chord
        # Spelled by letter: the root's letter (flats, sharps under a diminished chord), then
        # every other letter; a chord tone outside the scale alters the scale tone of its
        # letter (A flat in iv alters A, F sharp in II alters F, E in minor's IV alters E flat).
        letter = (_SHARP_LETTER if fifth_above == 6 else _FLAT_LETTER)[root % 12]
        tones, borrowed, altered = set(), set(), set()
        for k, interval in enumerate((0, third_above, fifth_above)):
            tone = (root + interval) % 12
            tones.add(tone)
            if tone not in inside:
                borrowed.add(tone)
                altered.add(scale_of(mode)[(letter + 2 * k) % 7])
        inside = (inside | borrowed) - (altered - tones)
        if mode == "minor" and 10 in tones:  # under VII (B flat in C minor), no B natural
            inside.discard(11)
    row = np.zeros(len(VOCAB), dtype=np.float32)
    for r in range(REL_PITCH_LOW, REL_PITCH_HIGH + 1):
        if r % 12 not in inside:
            row[NOTE0 + r - REL_PITCH_LOW] = -scale_bias
        elif r % 12 == third:
            row[NOTE0 + r - REL_PITCH_LOW] = third_bias
    row.flags.writeable = False
    return row


@lru_cache(maxsize=64)
def plan_row(root: int, third: int, bias: float) -> np.ndarray:
    """Logit offsets: `bias` on the chord token of a planned chord (a harmony model's choice
    of the bar's chord leans on the plan)."""
    row = np.zeros(len(VOCAB), dtype=np.float32)
    row[chord_token(root, "min" if third == _MIN else "maj")] = bias
    row.flags.writeable = False
    return row


@lru_cache(maxsize=4096)  # chords × pad pitches × the tones a chord already has
def tones_row(
    root: int,
    third: int,
    bias: float,
    above: int = -1,
    only_root: bool = False,
    have: int = 0,
    have_share: float = 1.0,
    fifth: int = 7,
):
    """Logit offsets: `bias` on the pitch tokens (relative to the tonic) of a chord's root, or
    of its root, third and fifth, above pitch token `above` within an octave (-1: anywhere).
    `have`: a mask of the pitch classes (bit k: k semitones above the tonic) the chord already
    sounds; its tones gain only `have_share` of the bias, so the chord fills in its missing
    tones (the third first of all, that says major or minor) before it doubles one."""
    classes = {root % 12} if only_root else {root % 12, (root + third) % 12, (root + fifth) % 12}
    row = np.zeros(len(VOCAB), dtype=np.float32)
    for token in range(NOTE0, NOTE0 + N_NOTE):
        pc = (token - NOTE0 + REL_PITCH_LOW) % 12
        if pc in classes and (above < 0 or above < token <= above + 12):
            row[token] = bias * have_share if have >> pc & 1 else bias
    row.flags.writeable = False
    return row


def step_row(events: list[Event], bias: float) -> np.ndarray | None:
    """Logit offsets: `bias` on the pitch tokens a step (one or two semitones, up or down)
    from the lead's last note among `events`; None before the lead has played."""
    previous = next((e[2] for e in reversed(events) if e[1] == LEAD), None)
    return None if previous is None else _steps_from(previous, bias)


@lru_cache(maxsize=256)
def _steps_from(previous: int, bias: float) -> np.ndarray:
    row = np.zeros(len(VOCAB), dtype=np.float32)
    for token in (previous - 2, previous - 1, previous + 1, previous + 2):
        if NOTE0 <= token < NOTE0 + N_NOTE:
            row[token] = bias
    row.flags.writeable = False
    return row


def chord_mask(events: list[Event], notes: int) -> int:
    """The pitch classes (bit k: k semitones above the tonic) of the last `notes` events."""
    mask = 0
    for _, _, pitch, _ in events[len(events) - notes :] if notes else ():
        mask |= 1 << (pitch - NOTE0 + REL_PITCH_LOW) % 12
    return mask


def density_pull(onsets: int, grammar: Grammar, target: float) -> float:
    """How far the loop so far is from the requested density: DENSITY_GAIN × log(ratio),
    clipped to ±1; positive when too busy (favour longer gaps), negative when too sparse."""
    elapsed_beats = (grammar.bar * grammar.steps_in_bar + grammar.pos + 1) / STEPS_PER_BEAT
    if elapsed_beats < 1.0:
        return 0.0  # too early to measure: the model starts the loop its own way
    density = max(onsets, 0.5) / elapsed_beats  # silence so far counts as very sparse
    return max(-1.0, min(1.0, DENSITY_GAIN * math.log(density / target)))


def sustain_pad(notes: list[Note], loop_beats: float) -> list[Note]:
    """The pad is the state's bed, played legato: each pad note holds until the pad's next
    chord (an onset of two or more pad notes; the first one across the loop's end, which the
    synth wraps), and no longer, so a sparse loop has no silent gaps and a chord change
    replaces the chord before it instead of piling onto it; a single pad note between two
    chords moves over the held chord. (Held past the next chord, the shipped decoding sounded
    4.3 pad notes at each onset, and its loops 5.9 notes at once: over the 3.5-5.5 of game
    music.)"""
    count = Counter(n.start_beats for n in notes if n.part == "pad")
    if not count:
        return notes
    chords = sorted(t for t in count if count[t] >= 2) or sorted(count)

    def until_next_chord(n: Note) -> Note:
        later = bisect_right(chords, n.start_beats)
        end = chords[later] if later < len(chords) else chords[0] + loop_beats
        return replace(n, duration_beats=end - n.start_beats)

    return [until_next_chord(n) if n.part == "pad" else n for n in notes]


class Development:
    """The motif prior: after its statement, the motif's part leans toward the motif's
    intervals (and inversions) from its previous note, and toward its pitch classes."""

    __slots__ = ("part", "after_step", "intervals", "pitches", "interval_bias", "_rows")

    def __init__(
        self, motif: tuple[Note, ...], events: list[Event], tonic: int, sampling: Sampling
    ) -> None:
        self.part = events[0][1]
        self.after_step = max(e[0] for e in events)
        from engine.score.motif import material  # mido: imported only when a state has a motif

        classes, intervals = material(motif)
        self.intervals = sorted(intervals)
        key_classes = {(c - tonic) % 12 for c in classes}  # pitch tokens are key-relative
        self.pitches = np.zeros(len(VOCAB), dtype=np.float32)
        for r in range(REL_PITCH_LOW, REL_PITCH_HIGH + 1):
            if r % 12 in key_classes:
                self.pitches[NOTE0 + r - REL_PITCH_LOW] = sampling.motif_pitch_bias
        self.interval_bias = sampling.motif_interval_bias
        self._rows: dict[int | None, np.ndarray] = {}

    @classmethod
    def of(cls, spec: LoopSpec, events: list[Event], sampling: Sampling) -> Development | None:
        if not events or not (sampling.motif_interval_bias or sampling.motif_pitch_bias):
            return None
        melodic = tuple(n for n in spec.motif if n.part != "drums")
        return cls(melodic, events, spec.tonic, sampling)

    def bias(self, grammar: Grammar, bias: np.ndarray | None) -> np.ndarray | None:
        """`bias` plus the prior, when the motif's part chooses the first pitch of an onset."""
        step = grammar.bar * grammar.steps_in_bar + grammar.pos
        if grammar.part != self.part or step <= self.after_step:
            return bias
        previous = next((e[2] for e in reversed(grammar.events) if e[1] == self.part), None)
        row = self._rows.get(previous)
        if row is None:
            row = self.pitches.copy()
            for interval in self.intervals if previous is not None else ():
                if NOTE0 <= previous + interval < NOTE0 + N_NOTE:
                    row[previous + interval] += self.interval_bias
            self._rows[previous] = row
        return row if bias is None else bias + row


class Groove:
    """The groove prior: from the second bar on, the onsets of the bar before are the template.
    Its positions gain `bias` as the next onset; at a position where it had drums, the drums
    gain it as the part to play, and its drum keys there as the drums' notes."""

    __slots__ = ("bias", "drums", "steps", "_seen", "_bar", "_positions", "_kits", "_later",
                 "_previous_kits", "_more_drums")  # fmt: skip

    def __init__(self, bias: float, drums: bool, steps_in_bar: int) -> None:
        self.bias = bias
        self.drums = drums
        self.steps = steps_in_bar
        self._seen = 0  # grammar events read so far
        self._bar = 0  # the bar those events were filling
        self._positions: set[int] = set()  # onsets of the bar being written
        self._kits: dict[int, list[int]] = {}  # ... and its drum tokens by position
        # The template (the bar before): [current position + 1] -> its later POS tokens, and
        # position -> its drum tokens there.
        self._later: list[np.ndarray] = [_NONE] * (steps_in_bar + 1)
        self._previous_kits: dict[int, np.ndarray] = {}
        self._more_drums: dict[int, np.ndarray] = {}  # position -> later POS and its drums

    @classmethod
    def of(cls, parts: tuple[str, ...], steps_in_bar: int, sampling: Sampling) -> Groove | None:
        if not sampling.groove_bias:
            return None
        return cls(sampling.groove_bias, "drums" in parts, steps_in_bar)

    def _roll(self, bar: int) -> None:
        """On to `bar`: the bar just written becomes the template if it is the one before."""
        if bar == self._bar:
            return
        follows = bar == self._bar + 1
        positions = np.array(sorted(self._positions) if follows else [], dtype=np.int64)
        self._later = [positions[positions > p] + POS0 for p in range(-1, self.steps)]
        self._previous_kits = (
            {p: np.array(ks, dtype=np.int64) for p, ks in self._kits.items()} if follows else {}
        )
        self._more_drums = {
            p: np.concatenate([self._later[p + 1], ks]) for p, ks in self._previous_kits.items()
        }
        self._positions, self._kits, self._bar = set(), {}, bar

    def tokens(self, grammar: Grammar) -> np.ndarray:
        """The tokens this prior adds `bias` to at the grammar's next choice (maybe none)."""
        events = grammar.events
        for step, part, pitch, _ in events[self._seen :]:
            self._roll(step // self.steps)
            position = step % self.steps
            self._positions.add(position)
            if part == 0:  # the drums
                self._kits.setdefault(position, []).append(pitch)
        self._seen = len(events)
        self._roll(grammar.bar)
        phase, pos = grammar.phase, grammar.pos
        if phase in ("bar", "dv"):
            if phase == "dv" and grammar.part == 0 and pos in self._more_drums:
                return self._more_drums[pos]  # the next onset, or more drums here
            return self._later[pos + 1]
        if not self.drums or pos not in self._previous_kits:
            return _NONE
        if phase == "pos":
            return _DRUMS
        if phase == "inst" and grammar.part == 0:
            return self._previous_kits[pos]
        return _NONE


_NONE = np.zeros(0, dtype=np.int64)
_DRUMS = np.array([INST0], dtype=np.int64)  # INST_drums: the drums are part 0
_NONE.flags.writeable = _DRUMS.flags.writeable = False
