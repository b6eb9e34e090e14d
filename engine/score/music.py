"""Musical vocabulary shared by the graph, the generators, the synth and the mixer.

Everything here is a frozen value: generators produce `Loop`s, the synth turns a
`Loop` into a `Clip` (audio), and the mixer plays clips. Times inside a loop are in
beats from the loop start; the loop is exactly `spec.bars` bars long.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.score.units import Meter, quarters_per_bar

SAMPLE_RATE = 48_000

# The roles a state can fill. Order is the stem order of a rendered clip.
PARTS: tuple[str, ...] = ("drums", "bass", "pad", "lead")

# Mood words a designer may write, mapped to a (valence, arousal) quadrant.
# valence: +1 pleasant / -1 unpleasant; arousal: +1 energetic / -1 calm.
MOODS: dict[str, tuple[int, int]] = {
    "happy": (1, 1),
    "triumphant": (1, 1),
    "excited": (1, 1),
    "calm": (1, -1),
    "peaceful": (1, -1),
    "dreamy": (1, -1),
    "angry": (-1, 1),
    "tense": (-1, 1),
    "scary": (-1, 1),
    "sad": (-1, -1),
    "dark": (-1, -1),
    "mysterious": (-1, -1),
}

# The quadrant names the model is conditioned on (Russell's circumplex, one word each).
QUADRANTS: dict[tuple[int, int], str] = {
    (1, 1): "happy",
    (1, -1): "calm",
    (-1, 1): "tense",
    (-1, -1): "sad",
}

MODES: tuple[str, ...] = ("major", "minor")
DENSITIES: tuple[str, ...] = ("low", "medium", "high")

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)  # natural minor
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def scale_of(mode: str) -> tuple[int, ...]:
    return MAJOR_SCALE if mode == "major" else MINOR_SCALE


def transposition(to_pitch_class: int, from_pitch_class: int = 0) -> int:
    """Semitones that move music in `from_pitch_class` to `to_pitch_class` by the smallest
    interval: -5..+6 (a tritone goes up)."""
    shift = (to_pitch_class - from_pitch_class) % 12
    return shift - 12 if shift > 6 else shift


def quadrant_of(mood: str) -> str:
    """The valence/arousal quadrant name of a mood word (see `MOODS`)."""
    return QUADRANTS[MOODS[mood]]


@dataclass(frozen=True, slots=True)
class Instrument:
    """A General MIDI sound: a melodic program, or a drum kit (bank 128)."""

    name: str
    program: int
    is_drums: bool = False


@dataclass(frozen=True, slots=True)
class Note:
    part: str  # one of PARTS
    pitch: int  # MIDI note number; for drums, the GM percussion key
    start_beats: float  # from the loop start, 0 <= start < loop length
    duration_beats: float  # may run past the loop end: the synth wraps it
    velocity: int  # 1..127


@dataclass(frozen=True, slots=True)
class Sends:
    """How wet a state sounds: every part's send to the synth's reverb and chorus, 0..1
    (MIDI controllers 91 and 93; a reverb of 0.3 is near General MIDI's default)."""

    reverb: float = 0.3
    chorus: float = 0.1


@dataclass(frozen=True, slots=True)
class LoopSpec:
    """What a state asks a generator for."""

    state: str
    mood: str
    mode: str  # "major" | "minor"
    tonic: int  # pitch class 0..11
    tempo_bpm: float
    meter: Meter
    bars: int
    instruments: tuple[tuple[str, Instrument], ...]  # (part, instrument), parts from PARTS
    density: str = "medium"  # one of DENSITIES
    seed: int = 0
    motif: tuple[Note, ...] = ()  # designer's seed motif, already transposed to the key
    sends: Sends = Sends()  # the graph's `mix:` for this state

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(part for part, _ in self.instruments)

    @property
    def beats(self) -> float:
        """Quarter notes in one loop."""
        return self.bars * quarters_per_bar(self.meter)

    @property
    def seconds(self) -> float:
        return self.beats * 60.0 / self.tempo_bpm

    @property
    def frames(self) -> int:
        return round(self.seconds * SAMPLE_RATE)

    @property
    def quadrant(self) -> str:
        return quadrant_of(self.mood)


@dataclass(frozen=True, slots=True)
class Loop:
    """Notes for exactly `spec.bars` bars, written by a generator."""

    spec: LoopSpec
    notes: tuple[Note, ...]
    generator: str  # "model" | "rules" | ...
    loop_id: str = field(default="")


def stem_scale(stems) -> float:
    """A stem sample's float value per unit: 1 / 32767 for 16-bit PCM (full scale is 1.0),
    1 for float stems."""
    kind, size = stems.dtype.kind, stems.dtype.itemsize
    if kind == "u":
        raise ValueError(f"stems of unsigned samples ({stems.dtype}) are not a PCM Segue writes")
    return 1.0 / (2 ** (8 * size - 1) - 1) if kind == "i" else 1.0


@dataclass(frozen=True, eq=False)
class Clip:
    """A loop rendered to audio: one stereo stem per part, periodic.

    `stems` has shape (len(parts), frames, 2): float32, or 16-bit PCM as the daemon keeps them
    (`stem_scale`). `mix` is their float32 sum at unit gain, times that scale.
    The audio is sample-seamless: release tails past the loop end are already
    added back onto the start, so playing `mix[i % frames]` never clicks.
    """

    loop: Loop
    parts: tuple[str, ...]
    stems: object  # np.ndarray, (parts, frames, 2) float32 or int16 (see stem_scale)
    mix: object  # np.ndarray, (frames, 2) float32
    loudness_lufs: float
    peak: float

    @property
    def frames(self) -> int:
        return self.mix.shape[0]  # type: ignore[attr-defined]
