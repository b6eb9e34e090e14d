"""Ready loops per state, written and rendered off the audio thread.

A `Workshop` turns a `LoopSpec` into a `Clip`: the model (or the rule-based fallback)
writes the notes, the SoundFont synth renders them. `LoopPool` keeps a few clips ready
for every state, so a transition never waits for generation.

Live, the workshop runs in a worker *process*: sampling and rendering are Python-heavy
and would compete with the audio callback for the GIL. Offline renders and tests use
the same code inline, which makes them deterministic for a seed.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import ctypes
import ctypes.util
import logging
import math
import mmap
import os
import tempfile
import threading
import time
import uuid
import zlib
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.score.graph import Graph, loop_spec
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
        clip = compact(self.synth.render(loop))
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
        clip = compact(self.synth.render(loop))
        return Made(clip, t1 - t0, time.perf_counter() - t1, reason)


# Stems are kept as float16: half the memory of float32, about 74 dB of signal to rounding
# noise at any level, and the mixer's slice copy into its float32 buffers converts them. The
# mix stays float32, the exact sum of those stems (the daemon never plays it: it plays stems).
STORAGE_DTYPE = np.float16
MIX_DTYPE = np.float32


def compact(clip: Clip) -> Clip:
    """The clip in Segue's storage format; every path (daemon, offline render, export) plays
    and writes these same samples."""
    stems = np.asarray(clip.stems).astype(STORAGE_DTYPE)
    # Summed in float32 without a float32 copy of the stems (the same samples, bit for bit).
    mix = stems.sum(axis=0, dtype=MIX_DTYPE) if stems.shape[0] else np.asarray(clip.mix)
    peak = float(np.abs(mix).max()) if mix.size else 0.0
    return replace(clip, stems=stems, mix=mix.astype(MIX_DTYPE, copy=False), peak=peak)


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


# -- worker process -------------------------------------------------------------------

_workshop: Workshop | None = None


def _worker_init(soundfont: str, model: str | None, use_model: bool,
                 warm_graph: str | None = None) -> None:  # fmt: skip
    global _workshop
    parent = os.getppid()

    def exit_with_parent() -> None:
        # A daemon killed outright must not leave its worker behind.
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=exit_with_parent, name="segue-worker-watch", daemon=True).start()
    # Writing loops must never take the CPU from the audio thread.
    os.nice(10)
    _workshop = Workshop(soundfont, model, use_model, warm_graph)


def _worker_call(method: str, *args) -> Made:
    assert _workshop is not None
    made = getattr(_workshop, method)(*args)
    shipped = replace(made, clip=_ship(made.clip))
    del made
    _release_free_memory()
    return shipped


def _release_free_memory() -> None:
    """Hand the heap's free pages back: a render's temporaries would otherwise keep the
    worker's RSS up to 40 MB higher (measured), growing as heaps fragment."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None


# Clips cross from the worker as files in shared memory, mapped (not copied) by the daemon:
# unpickling 8 MB of stems would hold the daemon's GIL for milliseconds, and the audio
# callback is Python.
_SHM_DIR = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
_CLIP_PREFIX = "segue-clip-"


@dataclass(frozen=True)
class ShippedClip:
    """A clip whose audio waits in a file: stems (`dtype`) then mix (float32), native order."""

    path: str
    loop: Loop
    parts: tuple[str, ...]
    stems_shape: tuple[int, ...]
    loudness_lufs: float
    peak: float
    dtype: str = np.dtype(STORAGE_DTYPE).str


def _ship(clip: Clip) -> ShippedClip:
    path = _SHM_DIR / f"{_CLIP_PREFIX}{os.getppid()}-{uuid.uuid4().hex}"
    with open(path, "wb") as f:
        np.ascontiguousarray(clip.stems, dtype=STORAGE_DTYPE).tofile(f)
        np.ascontiguousarray(clip.mix, dtype=MIX_DTYPE).tofile(f)
    return ShippedClip(str(path), clip.loop, clip.parts, tuple(clip.stems.shape),
                       clip.loudness_lufs, clip.peak)  # fmt: skip


def _land(shipped: ShippedClip) -> Clip:
    """Map a shipped clip and unlink its file: the mapping keeps the memory until the clip's
    arrays are dropped. No MAP_POPULATE: populating 8 MB holds the process's memory-map
    lock for a millisecond or more, stalling the audio thread; the few minor faults per
    block that playback takes instead cost microseconds."""
    fd = os.open(shipped.path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        mapping = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
        os.unlink(shipped.path)
    stems_dtype = np.dtype(shipped.dtype)
    count = math.prod(shipped.stems_shape)
    stems = np.frombuffer(mapping, stems_dtype, count).reshape(shipped.stems_shape)
    mix = np.frombuffer(mapping, MIX_DTYPE, offset=count * stems_dtype.itemsize)
    mix = mix.reshape(shipped.stems_shape[1:])
    return Clip(shipped.loop, shipped.parts, stems, mix, shipped.loudness_lufs, shipped.peak)


def remove_stale_clips() -> int:
    """Delete clip files left by daemons that died before mapping them."""
    removed = 0
    for path in _SHM_DIR.glob(_CLIP_PREFIX + "*"):
        pid = path.name[len(_CLIP_PREFIX) :].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _worker_describe() -> tuple[str, str]:
    assert _workshop is not None
    return _workshop.generator_name, _workshop.model_problem


def _worker_synth() -> dict:
    """The synthesizer and SoundFont the worker renders with (for /segue/status)."""
    assert _workshop is not None
    return _workshop.synth.describe()


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


def _next_states(graph: Graph) -> dict[str, list[str]]:
    """Each state's possible next states: its transitions' targets, `any` rules, `next`."""
    out: dict[str, list[str]] = {name: [] for name in graph.states}
    for rule in graph.transitions:
        if rule.target is None or rule.target not in out:
            continue
        sources = list(out) if rule.source == "any" else [rule.source]
        for source in sources:
            if source in out and source != rule.target and rule.target not in out[source]:
                out[source].append(rule.target)
    for name, state in graph.states.items():
        if state.next in out and state.next not in out[name]:
            out[name].append(state.next)
    return out


def _need_order(next_states: dict[str, list[str]], start: str | None, names: list[str]) -> list:
    """`start`, then the states reachable from it, nearest first, then the rest in order."""
    order: list[str] = []
    frontier = [start] if start in next_states else []
    while frontier:
        order += [n for n in frontier if n not in order]
        frontier = [t for n in frontier for t in next_states[n] if t not in order]
    return order + [n for n in names if n not in order]


@dataclass
class PoolCounters:
    requested: int = 0
    made: int = 0
    failed: int = 0
    lost: int = 0  # requests lost with a dead worker (the supervisor reports the death)
    spares: int = 0  # transitions that replayed a state's last loop: no fresh one was ready
    discarded: int = 0
    fallbacks: int = 0
    generate_ms_last: float = 0.0
    render_ms_last: float = 0.0


class LoopPool:
    """A few ready clips per state; refilled in the background.

    Control thread only. Seeds are derived from (seed, state, request number), so the
    same graph and seed give the same loops in the same order, live or offline.
    """

    def __init__(self, maker, depth: int = 2, seed: int = 0) -> None:
        self.maker = maker
        self.depth = depth
        self.seed = seed
        self.specs: dict[str, LoopSpec] = {}
        self.ready: dict[str, collections.deque[Clip]] = {}
        self.pending: dict[str, list[tuple[int, cf.Future]]] = {}
        self.epoch: dict[str, int] = {}
        self.requests: dict[str, int] = {}
        self.extras: dict[tuple, Clip] = {}
        self.extras_pending: dict[tuple, cf.Future] = {}
        self._extra_args: dict[tuple, tuple] = {}  # to ask again if a worker dies
        self.spare: dict[str, Clip] = {}  # the last clip taken per state: replayed if need be
        self.stale: set[str] = set()  # states whose spare is music from before an edit
        self.counters = PoolCounters()
        self._next_states: dict[str, list[str]] = {}
        self._playing: str | None = None

    def set_graph(self, graph: Graph, first: str | None = None) -> set[str]:
        """Adopt a graph's states; returns the states whose music changed (pools flushed).
        `first` (the state playing now) is refilled before the others."""
        changed = set()
        specs = {name: loop_spec(graph, name, 0) for name in graph.states}
        for name, spec in specs.items():
            if self.specs.get(name) != spec:
                changed.add(name)
                self.epoch[name] = self.epoch.get(name, 0) + 1
                old = self.ready.get(name)
                if old:  # the old music stands in until the new is made
                    self.spare[name] = old[0]
                if name in self.spare:
                    self.stale.add(name)
                self.ready[name] = collections.deque()
                self.pending.setdefault(name, [])
                self.requests.setdefault(name, 0)
        for name in set(self.specs) - set(specs):
            self.ready.pop(name, None)
            self.pending.pop(name, None)
        for name in set(self.specs) - set(specs):
            self.spare.pop(name, None)
            self.stale.discard(name)
        self.specs = specs
        self._next_states = _next_states(graph)
        self._playing = first if first in specs else graph.initial
        self.fill(first)
        return changed

    def fill(self, first: str | None = None) -> None:
        """Ask for missing loops in order of need: one for `first` (the state playing), then
        one for each state it can reach, nearest first; then the next round, up to depth."""
        if first is not None and first in self.specs:
            self._playing = first
        order = _need_order(self._next_states, self._playing, list(self.specs))
        for level in range(1, self.depth + 1):
            for name in order:
                if len(self.ready[name]) + len(self.pending[name]) < level:
                    self._request(name)

    def _request(self, name: str) -> None:
        number = self.requests[name]
        self.requests[name] = number + 1
        seed = loop_seed(self.seed, name, number)
        spec = replace(self.specs[name], seed=seed)
        loop_id = f"{name}-{number}"
        self.pending[name].append((self.epoch[name], self.maker.submit("make", spec, loop_id)))
        self.counters.requested += 1

    def poll(self) -> list[str]:
        """Move finished work into the ready queues; returns states that got a clip."""
        self.maker.supervise()
        got = []
        for name, futures in self.pending.items():
            if not futures:
                continue
            keep = []
            for epoch, future in futures:
                if not future.done():
                    keep.append((epoch, future))
                    continue
                try:
                    made: Made = self.maker.receive(future.result())
                except BrokenProcessPool:
                    self.counters.lost += 1  # asked again below, by fill()
                    continue
                except Exception as exc:  # noqa: BLE001 - a failed loop is counted and logged
                    self.counters.failed += 1
                    log.error("generating a loop for %s failed: %s", name, exc)
                    continue
                if epoch != self.epoch.get(name):
                    self.counters.discarded += 1
                    continue
                self.counters.made += 1
                self.counters.generate_ms_last = made.seconds_generate * 1000
                self.counters.render_ms_last = made.seconds_render * 1000
                if made.fallback_reason:
                    self.counters.fallbacks += 1
                    log.warning("%s: %s; used the rule-based generator", name, made.fallback_reason)
                self.ready[name].append(made.clip)
                got.append(name)
            self.pending[name] = keep
        if any(len(self.pending[n]) + len(self.ready[n]) < self.depth for n in self.specs):
            self.fill()  # requests lost with a worker
        return got

    def take(self, name: str, spare: bool = False) -> Clip | None:
        """A fresh clip for `name`, or None if none is ready yet; asks for a refill.
        `spare`: rather than None, the state's last clip again, if it has one, or its music
        from before an edit (`stale`): a transition then never waits for the worker."""
        self.poll()
        clip = self.ready[name].popleft() if self.ready.get(name) else None
        self.fill(name)
        if clip is not None:
            self.spare[name] = clip
            self.stale.discard(name)
        elif spare and name in self.spare:
            self.counters.spares += 1
            clip = self.spare[name]
        return clip

    def wait_ready(self, names, timeout_s: float = 120.0) -> None:
        """Block until every named state has at least one clip (start-up only)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll()
            if all(self.ready.get(n) for n in names):
                return
            waiting = [f for n in names for _, f in self.pending.get(n, [])]
            if not waiting:
                self.fill()
                continue
            cf.wait(waiting, timeout=0.05, return_when=cf.FIRST_COMPLETED)
        raise TimeoutError("loops were not ready in time")

    # -- stingers and bridges: one clip per key, made once, kept until the graph changes --

    def request_extra(self, key: tuple, method: str, *args) -> None:
        if key not in self.extras and key not in self.extras_pending:
            self.extras_pending[key] = self.maker.submit(method, *args)
            self._extra_args[key] = (method, *args)

    def extra(self, key: tuple) -> Clip | None:
        """The clip for `key` if it is ready (stingers, bridges)."""
        future = self.extras_pending.get(key)
        if future is not None and future.done():
            del self.extras_pending[key]
            args = self._extra_args.pop(key)
            try:
                self.extras[key] = self.maker.receive(future.result()).clip
            except BrokenProcessPool:
                self.counters.lost += 1
                self.request_extra(key, *args)
                return None
            except Exception as exc:  # noqa: BLE001 - counted and logged; the music goes on
                self.counters.failed += 1
                log.error("rendering %s failed: %s", key, exc)
        return self.extras.get(key)

    def forget_extras(self, keep) -> None:
        """Drop stingers/bridges whose key fails `keep(key)` (after a reload)."""
        self.extras = {k: v for k, v in self.extras.items() if keep(k)}
        self.extras_pending = {k: v for k, v in self.extras_pending.items() if keep(k)}
        self._extra_args = {k: v for k, v in self._extra_args.items() if k in self.extras_pending}

    def sizes(self) -> dict[str, int]:
        return {name: len(q) for name, q in self.ready.items()}
