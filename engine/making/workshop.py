"""The workshop: a `LoopSpec` in, a `Clip` out. The model (or the rule-based fallback) writes
the notes, the SoundFont synth renders them; stingers and bridges are made here too. Live it
runs in the loop worker (engine/making/worker.py); offline renders and tests run it inline.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import threading
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.score.graph import loop_spec
from engine.score.load import load_graph
from engine.score.music import Clip, Loop, LoopSpec, Note, transposition
from engine.score.units import quarters_per_bar

log = logging.getLogger("segue.pool")


@dataclass(frozen=True, slots=True)
class Made:
    clip: Clip
    seconds_generate: float
    seconds_render: float
    fallback_reason: str = ""


class Workshop:
    """Generator + synth in one place. Not thread-safe: one per thread or process."""

    def __init__(self, soundfont: str | Path, model: str | Path | None = None,
                 use_model: bool = True, warm_graph: str | Path | None = None) -> None:  # fmt: skip
        from engine.making.rules import RuleGenerator
        from engine.making.synth import Synth

        self.synth = Synth(soundfont)
        warming = None
        if warm_graph is not None:
            # FluidSynth decodes samples in C without the GIL: the first state's sounds are
            # ready when the model is, and the first loop renders without decoding them.
            warming = threading.Thread(target=self._warm, args=(warm_graph,),
                                       name="segue-worker-warm", daemon=True)  # fmt: skip
            warming.start()
        self.rules = RuleGenerator()
        self.model = None
        self.model_problem = ""
        if use_model:
            try:
                from engine.making.model import ModelError, ModelGenerator

                try:
                    self.model = ModelGenerator.load(model)
                except ModelError as exc:
                    self.model_problem = str(exc)
            except ImportError as exc:  # model support not installed
                self.model_problem = f"model support unavailable ({exc})"
        else:
            self.model_problem = "model disabled"
        if warming is not None:
            warming.join()

    def _warm(self, graph_path: str | Path) -> None:
        """Preload the samples of the graph's initial state (its first loop is asked first)."""
        try:
            graph = load_graph(graph_path)
            self.synth.preload(loop_spec(graph, graph.initial, 0).instruments)
        except Exception as exc:  # noqa: BLE001 - only a head start; the daemon reports errors
            log.debug("no warm start from %s: %s", graph_path, exc)

    @property
    def generator_name(self) -> str:
        return "model" if self.model is not None else "rules"

    def make_stinger(self, stinger, state_spec: LoopSpec, loop_id: str) -> Made:
        """A stinger in a state's key and tempo: its notes, then enough bars for the tail."""
        t0 = time.perf_counter()
        shift = transposition(state_spec.tonic)
        notes = tuple(replace(n, part="lead", pitch=n.pitch + shift) for n in stinger.notes)
        end_beats = max(n.start_beats + n.duration_beats for n in notes)
        beats_per_bar = quarters_per_bar(state_spec.meter)
        tail_beats = 2.5 * state_spec.tempo_bpm / 60.0  # room for the release and reverb
        bars = max(1, math.ceil((end_beats + tail_beats) / beats_per_bar))
        spec = replace(state_spec, bars=bars, instruments=(("lead", stinger.instrument),),
                       motif=())  # fmt: skip
        loop = Loop(spec, notes, generator="stinger", loop_id=loop_id)
        t1 = time.perf_counter()
        clip = self.synth.render(loop, STORAGE_DTYPE)
        return Made(clip, t1 - t0, time.perf_counter() - t1)

    def make_bridge(self, spec: LoopSpec, previous: tuple[Note, ...], loop_id: str) -> Made:
        """A short phrase in the destination's key and tempo that develops the outgoing
        loop's last bar (its notes, moved into the destination key, prime the generator)."""
        moved = _into_key(previous, spec.tonic)
        return self.make(replace(spec, motif=moved), loop_id)

    def make(self, spec: LoopSpec, loop_id: str) -> Made:
        t0 = time.perf_counter()
        loop, reason = None, ""
        if self.model is not None:
            try:
                loop = self.model.generate(spec)
            except Exception as exc:  # noqa: BLE001 - any model failure falls back to rules
                reason = f"model failed: {exc}"
        if loop is None:
            loop = self.rules.generate(spec)
        loop = replace(loop, loop_id=loop_id)
        t1 = time.perf_counter()
        clip = self.synth.render(loop, STORAGE_DTYPE)
        return Made(clip, t1 - t0, time.perf_counter() - t1, reason)


# Stems are kept as 16-bit PCM, as FMOD and Wwise keep PCM sounds in memory: half the memory
# of float32, rounding noise at -101 dBFS, and a tenth of float16's cost to write and read
# (numpy converts float16 without the CPU's F16C: 17 ms a loop). A sample times
# `stem_scale(stems)` (engine.score.music) is its float value; the mixer folds that into each
# stem's gain. The mix stays float32, the exact sum of those stems times that scale: the daemon
# plays it for a state without layer curves while no part is muted or soloed, and the stems
# otherwise. The synth writes them so (`Synth.render(loop, STORAGE_DTYPE)`): every path
# (daemon, offline render, export) plays and writes these same samples.
STORAGE_DTYPE = np.int16


MIX_DTYPE = np.float32


def loop_seed(seed: int, state: str, number: int) -> int:
    """The seed of a state's `number`-th loop: the daemon, renders and exports agree."""
    return zlib.crc32(f"{seed}:{state}:{number}".encode())


def _into_key(notes: tuple[Note, ...], tonic: int) -> tuple[Note, ...]:
    """The phrase's top line (the highest pitched note at each onset: its melody), starting at
    beat 0, shifted to `tonic` by the smallest step from its lowest pitch class."""
    top: dict[float, Note] = {}
    for n in notes:
        if n.part != "drums" and (n.start_beats not in top or n.pitch > top[n.start_beats].pitch):
            top[n.start_beats] = n
    pitched = list(top.values())
    if not pitched:
        return ()
    first = min(n.start_beats for n in pitched)
    lowest = min(n.pitch for n in pitched)
    shift = transposition(tonic, lowest)
    return tuple(replace(n, part="lead", pitch=n.pitch + shift, start_beats=n.start_beats - first)
                 for n in sorted(pitched, key=lambda n: n.start_beats))  # fmt: skip


class InlineMaker:
    """Runs the workshop on the calling thread (offline renders, tests)."""

    def __init__(self, workshop: Workshop) -> None:
        self.workshop = workshop
        self.synth_info: dict = workshop.synth.describe()

    def describe(self) -> tuple[str, str]:
        return self.workshop.generator_name, self.workshop.model_problem

    def receive(self, made: Made) -> Made:
        return made

    def submit(self, method: str, *args) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(getattr(self.workshop, method)(*args))
        except Exception as exc:  # noqa: BLE001 - reported by the pool
            future.set_exception(exc)
        return future

    def supervise(self) -> None:
        pass

    def close(self) -> None:
        pass
