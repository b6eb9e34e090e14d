"""The model generator: Segue's int8 ONNX GRU writes a loop, token by token, under the grammar.

This is the only module that imports onnxruntime. The session runs on one thread with
spinning disabled, so generation in a background thread leaves the other core to the mixer.
Sampling is temperature + top-p with a numpy Generator seeded from `spec.seed`, and every
token is drawn from the tokens `engine.making.grammar.Grammar` allows: the loop has exactly
`spec.bars` bars at the state's meter, every note starts inside it, only the state's parts
play, no bar is empty, and the onset rate reaches the requested density bucket. A
designer's motif is fixed in the grammar: its part plays it note for note from the loop
start while the other parts play around it, and the model continues from there.

Soft priors (see `Sampling`) lean the model's choices toward the state's request without forbidding
anything: a scale prior lowers out-of-scale pitches and raises the mode's third; a density prior
favours longer or shorter gaps to the next onset while the loop so far is busier or sparser than
requested; a parts prior makes a requested part likelier the longer it rests; a motif prior leans
the motif's part toward the motif's intervals and pitch classes once it has been stated. Three
more give the loop a composer's frame. Harmony first: each loop draws a chord plan for its
mode (one chord a bar, from the tonic back to it, the minor's dominant major), and the bass's
downbeats lean to the bar's root, the pad's and the lead's strong notes to its chord tones;
the pad voices those chords (up to a triad); an onset that would leave a whole pulse empty
is less likely.
models/EVALUATION.md reports control accuracy and motif development with and without them;
models/LISTENING.md what a listener hears (key, pulse, chords), model alone beside shipped.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

from engine.making import model_files as files
from engine.making.grammar import Event, Grammar, grammar_events
from engine.making.model_files import ModelError, default_model_path
from engine.making.tokens import (
    BAR,
    DV0,
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
    Controls,
    TokenError,
    bar_steps,
    prefix_tokens,
    tempo_bucket,
)
from engine.score.music import DENSITIES, MODES, PARTS, LoopSpec, Note, quadrant_of, scale_of

# Onsets per beat (any part) that the density prior steers toward, inside each bucket of the
# training labels (low < 1.5 <= medium < 3 <= high <= 4 on the 16th grid).
DENSITY_TARGETS = {"low": 1.0, "medium": 2.1, "high": 3.6}
DENSITY_GAIN = 3.0  # full pull once the loop is ~30 % off its target
MAX_TOKENS = 2048  # a loop longer than this means decoding went wrong
MAX_CHORD_NOTES = 3  # notes one part may start at once: a triad, or three drum hits
# Most tokens one bar may take, per 16th of the bar (7 → 112 in 4/4), spent pro rata (see
# engine.making.grammar.Grammar): bounds the time to write a loop. Reached mostly at "high" density
# with 4 parts, where it thins chords rather than cutting the bar.
BAR_TOKENS_PER_STEP = 7
THIN_FROM = 0.7  # share of the bar's budget, pro rata to the position, that starts thinning
THIN_BIAS = 3.0  # logit taken from more notes at the current onset while thinning
PAD, BASS, LEAD = PARTS.index("pad"), PARTS.index("bass"), PARTS.index("lead")
# Chord plans for four bars, as (root in semitones above the tonic, third in semitones above
# the root): common-practice and game-music progressions. In minor the chord before the
# return is the major dominant (the harmonic minor's leading tone), which a minor key and
# its relative major do not share.
_MAJ, _MIN = 4, 3
PROGRESSIONS = {
    "major": (
        ((0, _MAJ), (5, _MAJ), (7, _MAJ), (0, _MAJ)),  # I IV V I
        ((0, _MAJ), (9, _MIN), (5, _MAJ), (7, _MAJ)),  # I vi IV V
        ((0, _MAJ), (7, _MAJ), (9, _MIN), (5, _MAJ)),  # I V vi IV
        ((0, _MAJ), (2, _MIN), (5, _MAJ), (7, _MAJ)),  # I ii IV V
    ),
    "minor": (
        ((0, _MIN), (5, _MIN), (7, _MAJ), (0, _MIN)),  # i iv V i
        ((0, _MIN), (8, _MAJ), (5, _MIN), (7, _MAJ)),  # i VI iv V
        ((0, _MIN), (5, _MIN), (8, _MAJ), (7, _MAJ)),  # i iv VI V
        ((0, _MIN), (5, _MIN), (0, _MIN), (7, _MAJ)),  # i iv i V
    ),
}


@dataclass(frozen=True, slots=True)
class Sampling:
    temperature: float = 1.0
    top_p: float = 0.95
    # Subtracted from the logits of out-of-scale pitches: a soft tonic/scale prior (0 = off).
    scale_bias: float = 2.0
    # Added to the logits of the mode's third (minor or major, every octave): the note that
    # makes the mode audible, which a loop of roots and fifths leaves ambiguous (0 = off).
    third_bias: float = 1.0
    # Density prior: when the loop so far is busier than requested, log(gap to the next onset,
    # in 16ths) times this (times the log-ratio of densities, within ±1) is added to the
    # next-position choices; when sparser, subtracted (0 = off).
    density_bias: float = 6.0
    # Added to the part token of a requested part, times how long it has rested (up to one
    # bar: full strength), so every part the state asks for keeps playing (0 = off).
    parts_bias: float = 8.0
    # Motif development, for the part that states a designer's motif, once it has been
    # stated: added to pitches a motif interval (or its inversion) away from that part's
    # previous note, and to pitches of the motif's pitch classes (0 = off).
    motif_interval_bias: float = 2.0
    motif_pitch_bias: float = 1.0
    # Harmony first: each loop follows a chord plan, one chord per bar drawn for its mode
    # (`PROGRESSIONS`: from the tonic, back to it through the last bar). Added to the bar's
    # chord root for the bass's first note on a downbeat, and to the bar's chord tones for the
    # pad's first note of an onset and the lead's first note on a pulse (half) (0 = off).
    harmony_bias: float = 8.0
    # The pad is the state's bed: once it has started a note, added to the bar's chord tones
    # above its last note, until it sounds a triad (0 = off).
    pad_chord_bias: float = 10.0
    # Taken from the next-onset choices once for each pulse (a quarter, or a dotted quarter in
    # 6/8, 9/8, 12/8) they would leave without any onset: the music keeps its pulse (0 = off).
    pulse_bias: float = 2.0
    # Hard guarantees of the grammar (engine.making.grammar.Grammar), beyond the loop's shape:
    # at least the requested density bucket's lowest onset rate, and no empty bar.
    density_floor: bool = True
    fill_bars: bool = True


@lru_cache(maxsize=64)
def _log_gaps(steps_in_bar: int) -> np.ndarray:
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
def _skipped_pulses(steps_in_bar: int, pulse: int) -> np.ndarray:
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


@lru_cache(maxsize=1024)
def _tones_row(root: int, third: int, bias: float, above: int = -1, only_root: bool = False):
    """Logit offsets: `bias` on the pitch tokens (relative to the tonic) of a chord's root, or
    of its root, third and fifth, above pitch token `above` within an octave (-1: anywhere)."""
    classes = {root % 12} if only_root else {root % 12, (root + third) % 12, (root + 7) % 12}
    row = np.zeros(len(VOCAB), dtype=np.float32)
    for token in range(NOTE0, NOTE0 + N_NOTE):
        if (token - NOTE0 + REL_PITCH_LOW) % 12 in classes and (
            above < 0 or above < token <= above + 12
        ):
            row[token] = bias
    row.flags.writeable = False
    return row


def _density_pull(onsets: int, grammar: Grammar, target: float) -> float:
    """How far the loop so far is from the requested density: DENSITY_GAIN × log(ratio),
    clipped to ±1; positive when too busy (favour longer gaps), negative when too sparse."""
    elapsed_beats = (grammar.bar * grammar.steps_in_bar + grammar.pos + 1) / STEPS_PER_BEAT
    if elapsed_beats < 1.0:
        return 0.0  # too early to measure: the model starts the loop its own way
    density = max(onsets, 0.5) / elapsed_beats  # silence so far counts as very sparse
    return max(-1.0, min(1.0, DENSITY_GAIN * math.log(density / target)))


class _Steps:
    """The decoding loop's model calls, one token at a time, through two fixed I/O bindings
    (hidden state A → B, then B → A) over buffers of our own: no feed dict, no new arrays and
    no rebinding per token, about 20 % of a token's model time. `step` returns the logits
    as a view that the next step overwrites. Falls back to `session.run` if the binding API
    differs. One per loop: a generator serves several threads."""

    def __init__(self, session: ort.InferenceSession, hidden_shape: tuple[int, ...]) -> None:
        self.token = np.zeros(1, dtype=np.int64)
        self.hidden = np.zeros(hidden_shape, dtype=np.float32)
        self._session = session
        self._flip = 0
        try:
            other = np.zeros(hidden_shape, dtype=np.float32)
            self.logits = np.zeros((1, len(VOCAB)), dtype=np.float32)
            values = [ort.OrtValue.ortvalue_from_numpy(x)
                      for x in (self.token, self.hidden, other, self.logits)]  # fmt: skip
            token, first, second, logits = values
            self._bindings = []
            for source, target in ((first, second), (second, first)):
                binding = session.io_binding()
                binding.bind_ortvalue_input(files.INPUTS[0], token)
                binding.bind_ortvalue_input(files.INPUTS[1], source)
                binding.bind_ortvalue_output(files.OUTPUTS[0], logits)
                binding.bind_ortvalue_output(files.OUTPUTS[1], target)
                self._bindings.append(binding._iobinding)
            self._values = values  # the bindings point into these buffers: keep them alive
            self._run = session._sess.run_with_iobinding
            self._options = ort.RunOptions()
            self._run(self._bindings[0], self._options)  # a binding that differs fails here
            self.hidden[:] = 0.0
            other[:] = 0.0
        except Exception:  # noqa: BLE001 - any difference in the binding: use the public API
            self._bindings = []

    def step(self, token: int) -> np.ndarray:
        """Feed one token; the logits for the next, shape (1, vocabulary)."""
        self.token[0] = token
        if self._bindings:
            self._run(self._bindings[self._flip], self._options)
            self._flip ^= 1
            return self.logits
        logits, self.hidden = self._session.run(
            list(files.OUTPUTS), {"token": self.token, "hidden": self.hidden}
        )
        return logits


def sustain_pad(notes: list[Note], loop_beats: float) -> list[Note]:
    """The pad is the state's bed: each pad chord holds until the pad's next onset (the last
    one across the loop's end, which the synth wraps), so a sparse loop has no silent gaps.
    Notes are only ever lengthened."""
    onsets = sorted({n.start_beats for n in notes if n.part == "pad"})
    if not onsets:
        return notes
    following = dict(zip(onsets, [*onsets[1:], onsets[0] + loop_beats], strict=True))
    return [
        replace(n, duration_beats=max(n.duration_beats, following[n.start_beats] - n.start_beats))
        if n.part == "pad"
        else n
        for n in notes
    ]


class _Development:
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
    def of(cls, spec: LoopSpec, events: list[Event], sampling: Sampling) -> _Development | None:
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


class ModelGenerator:
    """Writes loops with the int8 GRU. Thread-safe: each call keeps its own state."""

    name = "model"

    def __init__(
        self, session: ort.InferenceSession, manifest: dict, path: Path, sampling: Sampling
    ) -> None:
        self._session = session
        self.manifest = manifest
        self.path = path
        self.sampling = sampling
        arch = manifest["architecture"]
        self._hidden_shape = (arch["layers"], 1, arch["hidden"])
        # Logit offsets of the scale prior: out-of-scale pitches lose `scale_bias`.
        self._scale_bias = {}
        for mode in ("major", "minor"):
            offsets = np.zeros(len(VOCAB), dtype=np.float32)
            for r in range(REL_PITCH_LOW, REL_PITCH_HIGH + 1):
                if r % 12 not in scale_of(mode) and not (mode == "minor" and r % 12 == 11):
                    offsets[NOTE0 + r - REL_PITCH_LOW] = -sampling.scale_bias
                elif r % 12 == (3 if mode == "minor" else 4):
                    offsets[NOTE0 + r - REL_PITCH_LOW] = sampling.third_bias
            self._scale_bias[mode] = offsets

    @classmethod
    def load(
        cls, path: str | Path | None = None, sampling: Sampling | None = None
    ) -> ModelGenerator:
        """Load a model and its manifest (`<model>.json` beside it); None → the shipped one."""
        model_path = Path(path) if path is not None else default_model_path()
        if not model_path.is_file():
            raise ModelError(f"model file not found: {model_path}")
        meta_path = files.manifest_path(model_path)
        if not meta_path.is_file():
            raise ModelError(f"model manifest not found: {meta_path}")
        try:
            manifest = json.loads(meta_path.read_text())
        except (OSError, ValueError) as error:
            raise ModelError(
                f"model manifest {meta_path.name} is not valid JSON: {error}"
            ) from None
        if not isinstance(manifest, dict):
            raise ModelError(f"model manifest {meta_path.name} is not a JSON object")
        files.check_manifest(manifest, model_path)
        model_bytes = model_path.read_bytes()
        if hashlib.sha256(model_bytes).hexdigest() != manifest.get("sha256"):
            raise ModelError(f"model file {model_path.name} does not match its manifest (sha256)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelError(f"model file {model_path.name} cannot be loaded: {error}") from None
        names_in = tuple(i.name for i in session.get_inputs())
        names_out = tuple(o.name for o in session.get_outputs())
        if names_in != files.INPUTS or names_out != files.OUTPUTS:
            raise ModelError(f"model file {model_path.name} has tensors {names_in} → {names_out}")
        if session.get_outputs()[0].shape[-1] != len(VOCAB):
            raise ModelError(f"model file {model_path.name} has a different vocabulary size")
        return cls(session, manifest, model_path, sampling or Sampling())

    # -- generation ---------------------------------------------------------------------
    def controls_for(self, spec: LoopSpec) -> Controls:
        try:
            quadrant = quadrant_of(spec.mood)
        except KeyError:
            raise ModelError(f"mood {spec.mood!r} has no valence/arousal quadrant") from None
        if spec.mode not in MODES:
            raise ModelError(f"mode {spec.mode!r} is not one of {', '.join(MODES)}")
        if spec.density not in DENSITIES:
            raise ModelError(f"density {spec.density!r} is not one of {', '.join(DENSITIES)}")
        meter = str(spec.meter)
        if f"METER_{meter}" not in VOCAB:
            raise ModelError(f"the model does not know the meter {meter}")
        unknown = [p for p in spec.parts if p not in PARTS]
        if unknown:
            raise ModelError(f"unknown part {unknown[0]!r}")
        return Controls(
            quadrant=quadrant,
            mode=spec.mode,
            tempo=tempo_bucket(spec.tempo_bpm),
            density=spec.density,
            meter=meter,
            parts=tuple(p for p in PARTS if p in spec.parts),
        )

    def motif_events(self, spec: LoopSpec, controls: Controls) -> list[Event]:
        """The motif as fixed events, played by the state's top melodic part (lead, else
        pad, else bass) at its own steps; a motif in a drums-only state is not heard."""
        melodic = [p for p in ("lead", "pad", "bass") if p in controls.parts]
        if not spec.motif or not melodic:
            return []
        notes = [replace(n, part=melodic[0]) for n in spec.motif if n.part != "drums"]
        return grammar_events(notes, controls, spec.bars, spec.tonic)

    def density_floor(self, spec: LoopSpec) -> int:
        """Fewest onsets that still measure as the requested density bucket."""
        edges = self.manifest["controls"]["density_edges_onsets_per_beat"]
        lowest = {"low": 0.0, "medium": edges[0], "high": edges[1]}[spec.density]
        return math.ceil(lowest * spec.beats - 1e-9)

    def tokens(self, spec: LoopSpec) -> list[int]:
        """The full token sequence of a new loop for `spec` (deterministic for spec.seed)."""
        return self._write(spec)[0]

    def _write(self, spec: LoopSpec) -> tuple[list[int], Grammar]:
        controls = self.controls_for(spec)
        motif = self.motif_events(spec, controls)
        try:
            grammar = Grammar(
                controls.meter,
                spec.bars,
                controls.parts,
                max_chord=MAX_CHORD_NOTES,
                bar_budget=BAR_TOKENS_PER_STEP * bar_steps(controls.meter),
                min_onsets=self.density_floor(spec) if self.sampling.density_floor else 0,
                fill_bars=self.sampling.fill_bars,
                fixed=motif,
            )
        except TokenError as error:
            raise ModelError(str(error)) from None
        development = _Development.of(spec, motif, self.sampling)
        rng = np.random.default_rng(spec.seed)
        sampling = self.sampling
        steps_in_bar = grammar.steps_in_bar
        bias = self._scale_bias[spec.mode] if sampling.scale_bias or sampling.third_bias else None
        if bias is None and (sampling.density_bias or sampling.parts_bias):
            bias = np.zeros(len(VOCAB), dtype=np.float32)
        # Where each requested part last started notes (−1: not yet).
        last_played = {INST0 + PARTS.index(p): -1 for p in controls.parts}
        thinning = np.zeros(len(VOCAB), dtype=np.float32)
        thinning[NOTE0:DV0] = -THIN_BIAS  # another chord note at this onset
        # (and another part once that part has played: a part not heard yet may still come in)
        gaps = _log_gaps(steps_in_bar) if sampling.density_bias else None
        pulse_16ths = pulse_steps(spec.meter)
        plan = chord_plan(spec.mode, spec.bars, spec.seed) if sampling.harmony_bias else None
        pulse = (
            -sampling.pulse_bias * _skipped_pulses(steps_in_bar, pulse_16ths)
            if sampling.pulse_bias
            else None
        )
        target = DENSITY_TARGETS[spec.density]
        inv_temperature = 1.0 / sampling.temperature
        steps = _Steps(self._session, self._hidden_shape)
        sequence = prefix_tokens(controls)
        for t in sequence:
            logits = steps.step(t)
        while not grammar.done:
            if len(sequence) >= MAX_TOKENS:
                raise ModelError(f"model wrote more than {MAX_TOKENS} tokens for one loop")
            choices = grammar.choices()
            if len(choices) == 1:  # a fixed (motif) note, or the only way on
                t = int(choices[0])
            else:
                phase = grammar.phase
                step_bias = bias if phase != "pitch" else None  # no prior touches durations
                if gaps is not None and phase in ("bar", "dv"):
                    pull = _density_pull(grammar.onsets, grammar, target)
                    step_bias = bias + (sampling.density_bias * pull) * gaps[grammar.pos + 1]
                if pulse is not None and phase in ("bar", "dv"):
                    row = pulse[grammar.pos + 1]
                    step_bias = row if step_bias is None else step_bias + row
                if sampling.parts_bias and phase in ("pos", "dv"):
                    # A requested part gets likelier the longer it rests, fully after a bar.
                    step = grammar.bar * steps_in_bar + grammar.pos
                    step_bias = step_bias.copy() if step_bias is bias else step_bias
                    for inst, last in last_played.items():
                        rest = min(1.0, (step - last) / steps_in_bar)
                        step_bias[inst] += sampling.parts_bias * rest
                if plan and phase == "inst":
                    root, third = plan[grammar.bar]
                    row = None
                    if grammar.part == BASS and grammar.pos == 0:
                        row = _tones_row(root, third, sampling.harmony_bias, only_root=True)
                    elif grammar.part == PAD:
                        row = _tones_row(root, third, sampling.harmony_bias)
                    elif grammar.part == LEAD and grammar.pos % pulse_16ths == 0:
                        row = _tones_row(root, third, sampling.harmony_bias / 2)
                    if row is not None:
                        step_bias = row if step_bias is None else step_bias + row
                if development is not None and phase == "inst":
                    step_bias = development.bias(grammar, step_bias)
                chord = (
                    phase == "dv"
                    and sampling.pad_chord_bias
                    and grammar.part == PAD
                    and grammar.chord < MAX_CHORD_NOTES
                )
                if chord:
                    root, third = (
                        plan[grammar.bar] if plan else (0, 4 if spec.mode == "major" else 3)
                    )
                    row = _tones_row(root, third, sampling.pad_chord_bias, grammar.last_pitch)
                    step_bias = row if step_bias is None else step_bias + row
                elif phase == "dv" and grammar.bar_tokens * steps_in_bar > (
                    THIN_FROM * grammar.bar_budget * (grammar.pos + 1)
                ):
                    # Near the bar's token budget at this 16th: thin the texture (fewer notes
                    # at this onset) before the budget stops adding them.
                    step_bias = thinning if step_bias is None else step_bias + thinning
                t = self._sample(logits[0], choices, step_bias, inv_temperature, rng)
            grammar.take(t)
            sequence.append(t)
            if t in last_played:
                if last_played[t] < 0:
                    thinning[t] = -THIN_BIAS
                last_played[t] = grammar.bar * steps_in_bar + grammar.pos
            if not grammar.done:
                logits = steps.step(t)
        return sequence, grammar

    def _sample(
        self,
        logits: np.ndarray,
        choices: np.ndarray,
        bias: np.ndarray | None,
        inv_temperature: float,
        rng: np.random.Generator,
    ) -> int:
        """Temperature + top-p sampling among the allowed tokens (ascending token ids)."""
        if bias is not None:
            logits = logits + bias
        z = logits[choices]
        if choices[0] in (BAR, EOS):
            # End of bar and end of loop are one event; the grammar says which one it is
            # (BAR and EOS are the lowest allowed ids, so it sits first).
            z[0] = np.logaddexp(logits[BAR], logits[EOS])
        if inv_temperature != 1.0:
            z *= inv_temperature
        z -= z.max()
        p = np.exp(z)
        order = z.argsort()[::-1]
        cumulative = p[order].cumsum()
        keep = int(cumulative.searchsorted(self.sampling.top_p * cumulative[-1])) + 1
        pick = int(cumulative.searchsorted(rng.random() * cumulative[keep - 1], side="right"))
        return int(choices[order[min(pick, keep - 1)]])

    def generate(self, spec: LoopSpec):
        """A new loop for `spec`; raises ModelError if the model cannot write one."""
        from engine.score.music import Loop

        try:
            _, grammar = self._write(spec)
        except TokenError as error:
            raise ModelError(f"decoding failed: {error}") from None
        notes = grammar.notes(spec.tonic)
        if not notes:
            raise ModelError("model wrote an empty loop")
        return Loop(spec, tuple(sustain_pad(notes, spec.beats)), generator=self.name)
