"""The music, assembled: a mixer the sinks pull, a pool of loops a maker fills, and the
Conductor that joins them. The daemon and the offline renderer build it here, the same way."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from engine.audio.mixer import Mixer
from engine.control.conductor import Conductor
from engine.control.timeline import Timeline
from engine.making.pool import LoopPool
from engine.score.graph import Graph


@dataclass
class Engine:
    mixer: Mixer
    pool: LoopPool
    conductor: Conductor

    @classmethod
    def assemble(
        cls,
        graph: Graph,
        maker,
        *,
        graph_path: str | Path,
        block_frames: int = 256,
        max_block_frames: int | None = None,
        pool_depth: int = 2,
        seed: int = 0,
        clock_ns=time.monotonic_ns,
        timeline: Timeline | None = None,
    ) -> Engine:
        """`maker` writes loops (a worker process live, inline offline); `clock_ns` is the
        monotonic clock, or a virtual one that the offline renderer advances."""
        mixer = Mixer(max_block_frames=max_block_frames or block_frames, clock_ns=clock_ns)
        pool = LoopPool(maker, depth=pool_depth, seed=seed)
        conductor = Conductor(
            graph,
            pool,
            mixer,
            block_frames=block_frames,
            timeline=timeline,
            clock_ns=clock_ns,
            graph_path=str(graph_path),
        )
        return cls(mixer, pool, conductor)
