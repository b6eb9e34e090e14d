"""Ready loops per state, written and rendered off the audio thread.

A `Workshop` (engine/making/workshop.py) turns a `LoopSpec` into a `Clip`: the model (or
the rule-based fallback) writes the notes, the SoundFont synth renders them. `LoopPool`
keeps a few clips ready for every state, so a transition never waits for generation.

Live, the workshop runs in a worker *process* (engine/making/worker.py): sampling and
rendering are Python-heavy and would compete with the audio callback for the GIL. Offline
renders and tests use the same code inline, which makes them deterministic for a seed.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import logging
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace

from engine.making.workshop import Made, loop_seed
from engine.score.graph import Graph, loop_spec
from engine.score.music import Clip, LoopSpec

log = logging.getLogger("segue.pool")
# A request its worker never finished: the worker died with it (a broken pool), or it was
# cancelled with the dead worker's queue. Asked again, never reported as a failed loop.
_LOST = (BrokenProcessPool, cf.CancelledError)


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
                except _LOST:
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
            except _LOST:
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
