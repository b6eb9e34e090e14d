"""Bridges: a short phrase in the destination's key that develops the outgoing loop's last
bar, written ahead of time for every rule that wants one from the playing loop."""

from __future__ import annotations

import logging
import zlib
from dataclasses import replace

from engine.control import layers
from engine.control.clock import Main
from engine.control.report import Counters
from engine.making.pool import LoopPool
from engine.score.graph import Graph, Transition, loop_spec
from engine.score.music import Clip
from engine.score.units import quarters_per_bar

log = logging.getLogger("segue.conductor")


def key(loop_id: str, rule: Transition) -> tuple:
    return ("bridge", loop_id, rule.target, rule.bridge_bars)


class Bridges:
    def __init__(self, pool: LoopPool, counters: Counters) -> None:
        self.pool = pool
        self.counters = counters

    def prefetch(self, graph: Graph, main: Main | None) -> None:
        """Ask for the bridges out of the playing loop that rules from its state want."""
        if main is None:
            return
        pool = self.pool
        loop = main.clip.loop
        for rule in graph.transitions:
            if not rule.bridge_bars or rule.target is None:
                continue
            if rule.source not in (main.state.name, "any") or rule.target == main.state.name:
                continue
            wanted = key(loop.loop_id, rule)
            if wanted in pool.extras or wanted in pool.extras_pending:
                continue
            target = graph.states[rule.target]
            seed = zlib.crc32(f"{pool.seed}:bridge:{loop.loop_id}:{rule.target}".encode())
            spec = replace(
                loop_spec(graph, rule.target, seed), bars=rule.bridge_bars, state=f"{rule.target}"
            )
            beats = main.state.beats_per_loop
            bar = quarters_per_bar(main.state.meter)
            last_bar = tuple(n for n in loop.notes if n.start_beats >= beats - bar)
            pool.request_extra(
                wanted,
                "make_bridge",
                spec,
                layers.shift(last_bar, -(beats - bar)),
                f"bridge-{loop.loop_id}-{target.name}",
            )

    def take(self, main: Main | None, rule: Transition, state: str) -> Clip | None:
        """The bridge out of the playing loop for `rule`, if it is ready."""
        if main is None:
            return None
        clip = self.pool.extra(key(main.clip.loop.loop_id, rule))
        if clip is None:
            self.counters.bridges_missed += 1
            log.info("no bridge ready for %s -> %s; changing without one", state, rule.target)
        return clip
