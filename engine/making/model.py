"""The model generator: Segue's int8 ONNX GRU writes a loop, token by token, under the grammar.

This is the only module that imports onnxruntime. The session runs on one thread with
spinning disabled, so generation in a background thread leaves the other core to the mixer.
Sampling is temperature + top-p with a numpy Generator seeded from `spec.seed`, and every
token is drawn from the tokens `engine.making.grammar.Grammar` allows: the loop has exactly
`spec.bars` bars at the state's meter, every note starts inside it, only the state's parts
play, no bar is empty, and the onset rate reaches the requested density bucket. A
designer's motif is fixed in the grammar: its part plays it note for note from the loop
start while the other parts play around it, and the model continues from there.

Soft priors (engine.making.priors; their strengths in `Sampling`) lean the model's choices
toward the state's request without forbidding anything: the scale and the mode's third, the
requested density, every requested part kept playing, a designer's motif developed, and a
composer's frame (a chord plan per loop that the bass, pad and lead lean on; the pad voicing
chords; no empty pulse; a groove each bar takes from the one before). models/EVALUATION.md
reports control accuracy and motif development with and without them; models/LISTENING.md
what a listener hears, model alone beside shipped.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from engine.making import model_files as files
from engine.making.grammar import Event, Grammar, grammar_events
from engine.making.model_files import ModelError, default_model_path
from engine.making.priors import (
    BASS,
    DENSITY_TARGETS,
    LEAD,
    PAD,
    Development,
    Groove,
    Sampling,
    chord_mask,
    chord_plan,
    density_pull,
    log_gaps,
    plan_row,
    pulse_steps,
    scale_row,
    skipped_pulses,
    step_row,
    sustain_pad,
    tones_row,
)
from engine.making.tokens import (
    BAR,
    DV0,
    EOS,
    INST0,
    NOTE0,
    VOCAB,
    Controls,
    TokenError,
    bar_steps,
    chord_of,
    prefix_tokens,
    tempo_bucket,
)
from engine.score.music import DENSITIES, MODES, PARTS, LoopSpec, quadrant_of

MAX_TOKENS = 2048  # a loop longer than this means decoding went wrong
MAX_CHORD_NOTES = 3  # notes one part may start at once: a triad, or three drum hits
# Most tokens one bar may take, per 16th of the bar (10 → 160 in 4/4), spent pro rata (see
# engine.making.grammar.Grammar): bounds the time to write a loop; near it, chords thin before
# the bar is cut. Tuning specs, high loops, second taught model: 28.9 notes a bar at 8 / 0.8.
BAR_TOKENS_PER_STEP = 10
THIN_FROM = 0.9  # share of the bar's budget, pro rata to the position, that starts thinning
THIN_BIAS = 3.0  # logit taken from more notes at the current onset while thinning


class _Steps:
    """The decoding loop's model calls, one token at a time, through two fixed I/O bindings
    (hidden state A → B, then B → A) over buffers of our own: no feed dict, no new arrays and
    no rebinding per token, about 20 % of a token's model time. `step` returns the logits
    as a view that the next step overwrites. Falls back to `session.run` if the binding API
    differs. One per thread (a generator serves several), `reset` before each loop."""

    def __init__(self, session: ort.InferenceSession, hidden_shape: tuple[int, ...]) -> None:
        self.token = np.zeros(1, dtype=np.int64)
        self.hidden = np.zeros(hidden_shape, dtype=np.float32)
        self._session = session
        self._flip = 0
        try:
            other = np.zeros(hidden_shape, dtype=np.float32)
            self.logits = np.zeros((1, len(VOCAB)), dtype=np.float32)
            self._row = self.logits[0]
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

    def reset(self) -> None:
        """A new loop: the hidden state back to zeros."""
        self.hidden[:] = 0.0
        self._flip = 0

    def step(self, token: int) -> np.ndarray:
        """Feed one token; the logits for the next, shape (vocabulary,)."""
        self.token[0] = token
        if self._bindings:
            self._run(self._bindings[self._flip], self._options)
            self._flip ^= 1
            return self._row
        logits, self.hidden = self._session.run(
            list(files.OUTPUTS), {"token": self.token, "hidden": self.hidden}
        )
        return logits[0]


def _plus(bias: np.ndarray | None, row: np.ndarray, work: np.ndarray) -> np.ndarray:
    """bias + row, in `work` (which `bias` may already be); `row` itself when bias is None."""
    if bias is None:
        return row
    return np.add(bias, row, out=work)


def _in_work(bias: np.ndarray | None, work: np.ndarray) -> np.ndarray:
    """`work` holding `bias` (zeros for None), to add to in place; shared rows stay as they are."""
    if bias is not work:
        if bias is None:
            work.fill(0.0)
        else:
            np.copyto(work, bias)
    return work


def _bar_chord(grammar: Grammar, plan: list[tuple[int, int]]) -> tuple[int, int, int]:
    """(root, third, fifth) in semitones of the bar's chord: the one the model wrote for it,
    else (no harmony tokens, or a bar it left without a chord) the plan's."""
    chord = chord_of(grammar.chords[-1]) if grammar.chords else None
    if chord is None:
        root, third = plan[grammar.bar]
        return root, third, 7
    root, tones = chord
    return root, tones[1], tones[2]


def _sample(
    logits: np.ndarray,
    choices: np.ndarray,
    inv_temperature: float,
    top_p: float,
    rng: np.random.Generator,
) -> int:
    """Temperature + top-p sampling among the allowed tokens (ascending token ids) of the
    (biased) logits."""
    z = logits.take(choices)
    if choices[0] <= BAR:  # EOS or BAR: the grammar never allows PAD or BOS
        # End of bar and end of loop are one event; the grammar says which one it is
        # (BAR and EOS are the lowest allowed ids, so it sits first).
        z[0] = np.logaddexp(logits[BAR], logits[EOS])
    if inv_temperature != 1.0:
        z *= inv_temperature
    z -= np.maximum.reduce(z)
    p = np.exp(z)
    order = z.argsort()[::-1]
    cumulative = p.take(order).cumsum()
    keep = int(cumulative.searchsorted(top_p * cumulative[-1])) + 1
    pick = int(cumulative.searchsorted(rng.random() * cumulative[keep - 1], side="right"))
    return int(choices[order[min(pick, keep - 1)]])


class ModelGenerator:
    """Writes loops with the int8 GRU. Thread-safe: each thread keeps its own decoding state."""

    name = "model"

    def __init__(
        self, session: ort.InferenceSession, manifest: dict, path: Path, sampling: Sampling
    ) -> None:
        self._session = session
        self.manifest = manifest
        self.path = path
        self.sampling = sampling
        self._local = threading.local()  # each thread's _Steps
        arch = manifest["architecture"]
        self._hidden_shape = (arch["layers"], 1, arch["hidden"])

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
                harmony=True,  # the model writes each bar's chord before its notes
            )
        except TokenError as error:
            raise ModelError(str(error)) from None
        development = Development.of(spec, motif, self.sampling)
        groove = Groove.of(controls.parts, grammar.steps_in_bar, self.sampling)
        rng = np.random.default_rng(spec.seed)
        sampling = self.sampling
        steps_in_bar = grammar.steps_in_bar
        scaled = bool(sampling.scale_bias or sampling.third_bias)
        bias = scale_row(spec.mode, sampling.scale_bias, sampling.third_bias) if scaled else None
        if bias is None and (sampling.density_bias or sampling.parts_bias):
            bias = np.zeros(len(VOCAB), dtype=np.float32)
        bias_for = (-1, -1)  # (bar, chords written) that `bias` was made for
        # Where each requested part last started notes (−1: not yet).
        last_played = {INST0 + PARTS.index(p): -1 for p in controls.parts}
        thinning = np.zeros(len(VOCAB), dtype=np.float32)
        thinning[NOTE0:DV0] = -THIN_BIAS  # another chord note at this onset
        # (and another part once that part has played: a part not heard yet may still come in)
        gaps = log_gaps(steps_in_bar) if sampling.density_bias else None
        pulse_16ths = pulse_steps(spec.meter)
        rest = pulse_16ths if spec.density == "high" else steps_in_bar  # parts prior's reach
        plan = chord_plan(spec.mode, spec.bars, spec.seed)  # harmony and pad chords lean on it
        melodic = any(p != "drums" for p in controls.parts)  # a drums-only loop has no chords
        pulse = (
            -sampling.pulse_bias * skipped_pulses(steps_in_bar, pulse_16ths)
            if sampling.pulse_bias
            else None
        )
        target = DENSITY_TARGETS[spec.density]
        inv_temperature = 1.0 / sampling.temperature
        top_p = sampling.top_p
        steps = self._steps()
        # The priors of one step add up in `work`, the biased logits go to `biased`: two
        # buffers per loop instead of a new array per addition (the sums are the same).
        work = np.empty(len(VOCAB), dtype=np.float32)
        biased = np.empty(len(VOCAB), dtype=np.float32)
        insts = tuple(sorted(last_played))
        played = np.array(insts, dtype=np.int64)
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
                if scaled and melodic and bias_for != (grammar.bar, len(grammar.chords)):
                    # The scale follows the bar's chord where it borrows from outside it.
                    bias_for = (grammar.bar, len(grammar.chords))
                    bias = scale_row(spec.mode, sampling.scale_bias, sampling.third_bias,
                                     _bar_chord(grammar, plan))  # fmt: skip
                # step_bias: None, a shared row (read-only), or `work`.
                step_bias = bias if phase != "pitch" else None  # no prior touches durations
                if gaps is not None and phase in ("bar", "dv"):
                    pull = density_pull(grammar.onsets, grammar, target)
                    np.multiply(gaps[grammar.pos + 1], sampling.density_bias * pull, out=work)
                    work += bias
                    step_bias = work
                if pulse is not None and phase in ("bar", "dv"):
                    step_bias = _plus(step_bias, pulse[grammar.pos + 1], work)
                if sampling.parts_bias and phase in ("pos", "dv"):
                    # A requested part gets likelier the longer it rests, fully after a bar;
                    # in a high loop after a pulse (no part of a dense texture rests long).
                    step = grammar.bar * steps_in_bar + grammar.pos
                    step_bias = _in_work(step_bias, work)
                    parts_bias = sampling.parts_bias
                    work[played] += np.array(
                        [parts_bias * min(1.0, (step - last_played[inst]) / rest)
                         for inst in insts], dtype=np.float32)  # fmt: skip
                if sampling.harmony_bias and phase == "harm" and melodic:
                    # The model writes the bar's chord; it leans on the plan's.
                    row = plan_row(*plan[grammar.bar], sampling.harmony_bias)
                    step_bias = _plus(step_bias, row, work)
                if sampling.harmony_bias and phase == "inst":
                    root, third, fifth = _bar_chord(grammar, plan)
                    row = None
                    if grammar.part == BASS and grammar.pos == 0:
                        row = tones_row(root, third, sampling.harmony_bias, only_root=True)
                    elif grammar.part == PAD:
                        row = tones_row(root, third, sampling.harmony_bias, fifth=fifth)
                    elif grammar.part == LEAD and grammar.pos % pulse_16ths == 0:
                        row = tones_row(root, third, sampling.harmony_bias / 2, fifth=fifth)
                    elif grammar.part == LEAD and sampling.step_bias and development is None:
                        row = step_row(grammar.events, sampling.step_bias)  # (a motif: its own)
                    if row is not None:
                        step_bias = _plus(step_bias, row, work)
                if development is not None and phase == "inst":
                    step_bias = development.bias(grammar, step_bias)
                if groove is not None and phase != "pitch":
                    favoured = groove.tokens(grammar)
                    if len(favoured):
                        step_bias = _in_work(step_bias, work)
                        work[favoured] += groove.bias
                chord = (
                    phase == "dv"
                    and sampling.pad_chord_bias
                    and grammar.part == PAD
                    and grammar.chord < MAX_CHORD_NOTES
                )
                if chord:
                    root, third, fifth = _bar_chord(grammar, plan)
                    have = chord_mask(grammar.events, grammar.chord)
                    row = tones_row(root, third, sampling.pad_chord_bias, grammar.last_pitch,
                                    have=have, have_share=sampling.pad_double_share,
                                    fifth=fifth)  # fmt: skip
                    step_bias = _plus(step_bias, row, work)
                elif phase == "dv" and grammar.bar_tokens * steps_in_bar > (
                    THIN_FROM * grammar.bar_budget * (grammar.pos + 1)
                ):
                    # Near the bar's token budget at this 16th: thin the texture (fewer notes
                    # at this onset) before the budget stops adding them.
                    step_bias = _plus(step_bias, thinning, work)
                if step_bias is not None:
                    logits = np.add(logits, step_bias, out=biased)
                t = _sample(logits, choices, inv_temperature, top_p, rng)
            grammar.take(t)
            sequence.append(t)
            if t in last_played:
                if last_played[t] < 0:
                    thinning[t] = -THIN_BIAS
                last_played[t] = grammar.bar * steps_in_bar + grammar.pos
            if not grammar.done:
                logits = steps.step(t)
        return sequence, grammar

    def _steps(self) -> _Steps:
        """This thread's model calls (their bindings are made once per thread, not per loop)."""
        steps = getattr(self._local, "steps", None)
        if steps is None:
            steps = self._local.steps = _Steps(self._session, self._hidden_shape)
        steps.reset()
        return steps

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
