"""Notes to audio: a `Loop` rendered with a General MIDI SoundFont into a `Clip`.

TinySoundFont (the `tinysoundfont` package) does the synthesis: it reads sf2 and
sf3, renders 8 s of four parts in well under 100 ms and needs no system library
(see the measurements in the README). Each part is rendered alone, on its own MIDI
channel with its GM program (drums on channel 10, bank 128), into its own stereo
stem, so the mixer can layer stems.

A clip is periodic: each part is rendered for the loop plus its release tail, and
the tail is added back onto the loop start, so `mix[i % frames]` never clicks at
the loop point. Notes that run past the loop end wrap the same way.

Loudness: the mix is normalised to `TARGET_LUFS` integrated (ITU-R BS.1770 via
pyloudnorm, measured on the periodic loop), the stems by the same factor; then a
smooth, loop-periodic gain envelope keeps every sample of the mix at or below
`PEAK_CEILING` (-1 dBFS), applied to the stems alike so they still sum to the mix.
All of this runs in the generator's worker, never on the audio thread.

Threads: a `Synth` holds one synthesizer state and must not be shared between
threads; give each worker its own. TinySoundFont holds the GIL while it renders, so
`render` feeds it at most `MAX_CHUNK_FRAMES` per call to let other Python threads
(the audio callback) in between chunks.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyloudnorm
import tinysoundfont

from engine.music import SAMPLE_RATE, Clip, Loop, Note

log = logging.getLogger(__name__)

TARGET_LUFS = -18.0  # integrated loudness of every clip's mix
PEAK_CEILING = 0.891  # -1 dBFS: sample peak of every clip's mix after normalisation
MAX_CHUNK_FRAMES = 2048  # frames per TinySoundFont call: bounds how long the GIL is held
MAX_TAIL_SECONDS = 6.0  # release tails are rendered until silent, at most this long
SILENCE = 1e-5  # -100 dBFS: a tail chunk quieter than this ends the render
DRUM_CHANNEL = 9  # MIDI channel 10
CHANNELS = {"bass": 0, "pad": 1, "lead": 2, "drums": DRUM_CHANNEL}
LIMITER_BLOCK_FRAMES = 96  # 2 ms gain blocks
LIMITER_HALF_WIDTH_BLOCKS = 5  # ~10 ms attack and release around a peak
MIN_MEASURE_SECONDS = 0.5  # BS.1770 gates on 400 ms blocks: short loops are tiled


class Synth:
    """Renders loops with one SoundFont; loads it once. Not thread-safe: one per thread."""

    def __init__(self, soundfont: str | Path, sample_rate: int = SAMPLE_RATE) -> None:
        self.soundfont = Path(soundfont)
        self.sample_rate = sample_rate
        self._synth = tinysoundfont.Synth(samplerate=sample_rate)
        self._sfid = self._synth.sfload(str(self.soundfont))
        self._meter = pyloudnorm.Meter(sample_rate)
        self._warned: set[tuple[int, int]] = set()

    def render(self, loop: Loop) -> Clip:
        """The loop as a periodic, loudness-normalised clip; one stereo stem per part."""
        spec = loop.spec
        frames = round(spec.seconds * self.sample_rate)
        parts = spec.parts
        stems = np.zeros((len(parts), frames, 2), dtype=np.float32)
        frames_per_beat = self.sample_rate * 60.0 / spec.tempo_bpm
        for index, (part, instrument) in enumerate(spec.instruments):
            notes = [n for n in loop.notes if n.part == part]
            channel = CHANNELS.get(part, index)
            self._select(channel, instrument.program, instrument.is_drums)
            self._render_part(notes, channel, frames_per_beat, stems[index])
        mix = stems.sum(axis=0)
        loudness = self._loudness(mix)
        if np.isfinite(loudness):
            gain = np.float32(10.0 ** ((TARGET_LUFS - loudness) / 20.0))
            stems *= gain
            mix *= gain
            if _limit(stems, mix, PEAK_CEILING):
                loudness = self._loudness(mix)
            else:
                loudness = TARGET_LUFS
        peak = float(np.abs(mix).max()) if frames else 0.0
        return Clip(loop, parts, stems, mix, float(loudness), peak)

    def _select(self, channel: int, program: int, is_drums: bool) -> None:
        bank = 128 if is_drums else 0
        try:
            self._synth.program_select(channel, self._sfid, bank, program, is_drums)
        except RuntimeError:
            # A small SoundFont may lack a kit or program: use the first of its bank.
            if (bank, program) not in self._warned:
                self._warned.add((bank, program))
                log.warning(
                    "%s has no bank %d program %d; using program 0",
                    self.soundfont.name,
                    bank,
                    program,
                )
            self._synth.program_select(channel, self._sfid, bank, 0, is_drums)

    def _render_part(
        self, notes: list[Note], channel: int, frames_per_beat: float, stem: np.ndarray
    ) -> None:
        """Render one part into `stem` (frames, 2), folding everything past the end onto it."""
        events = _events(notes, frames_per_beat)
        loop_frames = stem.shape[0]
        end_frames = max(loop_frames, events[-1][0] if events else 0)
        max_tail = int(MAX_TAIL_SECONDS * self.sample_rate)
        buffer = np.zeros((end_frames + max_tail, 2), dtype=np.float32)
        position = 0
        for frame, is_on, key, velocity in events:
            position = self._generate(buffer, position, frame)
            if is_on:
                self._synth.noteon(channel, key, velocity)
            else:
                self._synth.noteoff(channel, key)
        position = self._generate(buffer, position, end_frames)
        # Release tails: render until a chunk is silent.
        while position < buffer.shape[0]:
            start = position
            position = self._generate(buffer, position, min(buffer.shape[0], position + 4096))
            if np.abs(buffer[start:position]).max() < SILENCE:
                break
        self._synth.sounds_off(channel)
        for start in range(0, position, loop_frames):
            chunk = buffer[start : min(position, start + loop_frames)]
            stem[: chunk.shape[0]] += chunk

    def _generate(self, buffer: np.ndarray, start: int, stop: int) -> int:
        while start < stop:
            end = min(stop, start + MAX_CHUNK_FRAMES)
            self._synth.generate_simple(end - start, buffer=memoryview(buffer[start:end]).cast("B"))
            start = end
        return start

    def _loudness(self, mix: np.ndarray) -> float:
        """Integrated LUFS of the periodic mix (tiled when shorter than the gating block)."""
        if mix.shape[0] == 0 or not np.any(mix):
            return float("-inf")
        repeats = int(np.ceil(MIN_MEASURE_SECONDS * self.sample_rate / mix.shape[0]))
        signal = np.tile(mix, (repeats, 1)) if repeats > 1 else mix
        return float(self._meter.integrated_loudness(signal.astype(np.float64)))


def _events(notes: list[Note], frames_per_beat: float) -> list[tuple[int, bool, int, int]]:
    """(frame, is_on, key, velocity) sorted; a repeated key ends the previous note first."""
    spans: list[list[int]] = []
    for note in sorted(notes, key=lambda n: n.start_beats):
        if not 0 <= note.pitch <= 127:
            continue
        on = round(note.start_beats * frames_per_beat)
        off = max(on + 1, round((note.start_beats + note.duration_beats) * frames_per_beat))
        spans.append([on, off, note.pitch, min(127, max(1, int(note.velocity)))])
    last_by_key: dict[int, list[int]] = {}
    for span in spans:
        previous = last_by_key.get(span[2])
        if previous is not None and previous[1] > span[0]:
            # Same key again before its note-off: a note-off would cut the new note.
            previous[1] = max(previous[0] + 1, span[0])
        last_by_key[span[2]] = span
    events = [(on, True, key, vel) for on, _, key, vel in spans]
    events += [(off, False, key, 0) for _, off, key, _ in spans]
    events.sort(key=lambda e: (e[0], e[1]))  # note-offs before note-ons at the same frame
    return events


def _limit(stems: np.ndarray, mix: np.ndarray, ceiling: float) -> bool:
    """Scale mix and stems in place by a smooth periodic gain so |mix| <= ceiling.

    The per-block gain is a circular minimum over neighbouring blocks, then a
    circular moving average no wider than that minimum, so the gain never exceeds
    what any sample needs; linear interpolation between block centres keeps it
    smooth. Returns whether any gain was applied.
    """
    frames = mix.shape[0]
    peak_per_frame = np.abs(mix).max(axis=1)
    if frames == 0 or peak_per_frame.max() <= ceiling:
        return False
    need = np.minimum(1.0, (ceiling * 0.999) / np.maximum(peak_per_frame, 1e-12))
    block = LIMITER_BLOCK_FRAMES
    blocks = -(-frames // block)
    padded = np.ones(blocks * block)
    padded[:frames] = need
    block_need = padded.reshape(blocks, block).min(axis=1)
    width = LIMITER_HALF_WIDTH_BLOCKS
    held = block_need.copy()
    for shift in range(1, width + 2):
        np.minimum(held, np.roll(block_need, shift), out=held)
        np.minimum(held, np.roll(block_need, -shift), out=held)
    smooth = sum(np.roll(held, shift) for shift in range(-width, width + 1)) / (2 * width + 1)
    starts = np.arange(blocks) * block
    centres = starts + (np.minimum(block, frames - starts) - 1) / 2.0
    xp = np.concatenate(([centres[-1] - frames], centres, [centres[0] + frames]))
    fp = np.concatenate(([smooth[-1]], smooth, [smooth[0]]))
    gain = np.interp(np.arange(frames), xp, fp).astype(np.float32)
    mix *= gain[:, None]
    stems *= gain[None, :, None]
    return True
