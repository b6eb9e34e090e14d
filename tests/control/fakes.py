"""A small graph and clips made of zeros: the Conductor's pure parts need no SoundFont."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.score.load import parse_graph

RATE = 48_000

GRAPH = parse_graph(
    """
version: 1
initial: calm
parameters:
  intensity: {default: 0.5, range: [0, 1]}
states:
  calm:  {mood: calm, tempo: 120, bars: 4, instruments: {pad: strings, lead: flute},
          cues: {drop: 6}, layers: {lead: {param: intensity, curve: [[0, 0], [1, 1]]}}}
  fight: {mood: angry, tempo: 90, meter: 6/8, bars: 2, instruments: {lead: flute}}
  win:   {mood: happy, tempo: 120, once: true, instruments: {lead: flute}}
  lost:  {mood: sad, tempo: 60, meter: 3/4, once: true, next: calm, instruments: {pad: strings}}
transitions:
  - {from: calm, on: enemy, to: fight, exit: next_bar, fade: 1 beat, while_pending: queue}
  - {from: fight, on: done, to: win, exit: next_beat, fade_out: 2 beats, fade_in: 0.25s}
  - {from: calm, on: sneak, to: fight, exit: drop, entry: same_position, while_pending: ignore}
  - {from: calm, when: intensity > 0.8, to: fight}
""",
    "test.yaml",
)
CALM, FIGHT, WIN, LOST = (GRAPH.states[n] for n in ("calm", "fight", "win", "lost"))


@dataclass
class FakeLoop:
    loop_id: str = "loop"
    generator: str = "rules"


@dataclass
class FakeClip:
    """What the Conductor's parts read of a clip: frames, parts, audio arrays, its loop."""

    frames: int
    parts: tuple[str, ...] = ("pad", "lead")
    loop: FakeLoop = field(default_factory=FakeLoop)

    @property
    def mix(self):
        return np.zeros((self.frames, 2), np.float32)

    @property
    def stems(self):
        return np.zeros((len(self.parts), self.frames, 2), np.float32)


def rule(event: str):
    return next(r for r in GRAPH.transitions if r.event == event)
