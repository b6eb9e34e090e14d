"""Musical time, named: a quarter note is not always a beat.

- A *quarter* (a quarter note) is the unit of note positions and loop lengths:
  `Note.start_beats`, `Note.duration_beats`, `LoopSpec.beats`, `State.beats_per_loop`.
- A *meter beat* is the meter's beat unit (an eighth in 6/8, a quarter in 3/4): bars, cues,
  fades written in beats, and the musical clock count these.
- A `Duration` is what a designer writes for a fade or a cooldown: seconds, meter beats or
  bars.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Meter:
    beats_per_bar: int = 4  # meter beats in a bar
    beat_unit: int = 4  # the note value of one meter beat: 4 a quarter, 8 an eighth

    def __str__(self) -> str:
        return f"{self.beats_per_bar}/{self.beat_unit}"


class Unit(StrEnum):
    SECONDS = "seconds"
    BEATS = "beats"  # meter beats
    BARS = "bars"


def quarters_per_beat(meter: Meter) -> float:
    """Quarter notes in one meter beat (0.5 in 6/8)."""
    return 4 / meter.beat_unit


def quarters_per_bar(meter: Meter) -> float:
    """Quarter notes in one bar (3.0 in 6/8 and 3/4, 4.0 in 4/4)."""
    return meter.beats_per_bar * 4 / meter.beat_unit


@dataclass(frozen=True, slots=True)
class Duration:
    amount: float
    unit: Unit

    def frames(self, tempo_bpm: float, meter: Meter, sample_rate: int) -> int:
        if self.unit == Unit.SECONDS:
            seconds = self.amount
        else:
            beats = self.amount * (meter.beats_per_bar if self.unit == Unit.BARS else 1)
            seconds = beats * 60.0 / tempo_bpm * quarters_per_beat(meter)
        return max(0, round(seconds * sample_rate))

    def __str__(self) -> str:
        unit = {Unit.SECONDS: "s", Unit.BEATS: " beats", Unit.BARS: " bars"}[self.unit]
        return f"{self.amount:g}{unit}"
