"""Notes to audio: a `Loop` rendered with a General MIDI SoundFont into a `Clip`.

FluidSynth (Debian `libfluidsynth3`, driven through `pyfluidsynth`) does the synthesis with
the SoundFont's whole model (modulators, filters) and its reverb and chorus. The sf3 loads
with `synth.dynamic-sample-loading`: a preset's samples are decoded when a loop first uses
it, then pinned, so the process holds only the sounds the graph plays. One `Synth` is reused
for every loop of a worker, reset between loops (sounds off, controllers reset, reverb and
chorus started afresh). A render repeats to within about -40 dBFS, not bit for bit: FluidSynth
reuses its voices and some of their state. Samples are resampled by linear interpolation
(FMOD's default; FluidSynth's 4th order costs 25 % more a voice and differs by -39 dB on the
mix), and a key struck again ends what is left of its last note once that has fallen 30 dB
(`choke.py`).

Stems: each part plays on its own MIDI channel, which FluidSynth renders to its own dry
stereo output in one pass. Reverb and chorus are one shared bus (four buses would cost four
times as much); the wet return is shared out among the stems by each part's recent energy
(a half-second memory; `wetbus.py`), so the stems still sum exactly to FluidSynth's mix and
a part faded out by layering takes most of its own reverb with it.

A clip is periodic: every part is rendered for the loop plus its tails (release and
reverb) until they are 60 dB below the loop's peak, and everything past the loop end is
added back onto the start, so `mix[i % frames]` never clicks at the loop point, dry or wet.

The mix (all in the worker, never on the audio thread):
1. humanisation: seeded, small per-note timing and velocity offsets, per part;
2. balance: every part is set to its own loudness (`PART_LUFS`, from its measured
   BS.1770 loudness), so the lead sits above the pad whatever programs the graph picks;
3. the mix is normalised to `TARGET_LUFS` integrated, through a gentle bus compressor
   (2:1 above `dynamics.COMPRESSOR_THRESHOLD_DB`), then normalised again;
4. a smooth, loop-periodic limiter keeps every sample at or below `PEAK_CEILING`.
Gains apply to the stems alike, so the stems still sum to the mix.
"""

from __future__ import annotations

import ctypes
import logging
import math
from pathlib import Path

import numpy as np

from engine.making.choke import OFF, ON, Choker, choke_events
from engine.making.dynamics import _compressor_gain, _limit_gain
from engine.making.loudness import MEASURE_STRIDE, integrated_lufs, k_weighting, weighted
from engine.making.wetbus import EnergyShares
from engine.score.music import SAMPLE_RATE, Clip, Loop, Note, Sends, stem_scale

log = logging.getLogger(__name__)

DEBIAN_PACKAGE = "libfluidsynth3"
TARGET_LUFS = -18.0  # integrated loudness of every clip's mix
PEAK_CEILING = 0.891  # -1 dBFS: sample peak of every clip's mix after normalisation
# Each part's loudness before the mix is normalised: the lead on top, the pad beneath,
# bass and drums steady between them.
PART_LUFS = {"lead": -21.0, "drums": -23.0, "bass": -24.0, "pad": -27.0}
PART_GAIN_LIMIT_DB = 15.0  # balance never moves a part further than this
MAX_PARTS = 4  # inside the synth: MIDI channel = audio channel = stem index
# The parts' channels in the MIDI files Segue writes (General MIDI: drums on channel 10).
CHANNELS = {"bass": 0, "pad": 1, "lead": 2, "drums": 9}
SEGMENT_FRAMES = 12_288  # 0.26 s (whole energy blocks): the tails are rendered a segment at a time
MAX_TAIL_SECONDS = 6.0  # tails are rendered until silent, at most this long
TAIL_FLOOR = 10.0 ** (-60 / 20)  # a tail segment this far below the loop's peak ends it (RT60)
HUMANISE_MS = {"drums": 3.0, "bass": 5.0, "pad": 8.0, "lead": 6.0}  # timing spread (s.d.)
HUMANISE_VELOCITY = 5.0  # velocity spread (s.d.)
# The bus: a mid-sized room, and FluidSynth's default chorus.
REVERB = {"roomsize": 0.45, "damping": 0.4, "width": 0.9, "level": 0.8}
SYNTH_GAIN = 0.4
FLUID_BLOCK_FRAMES = 64  # FluidSynth's internal block
WARM_KEY = 60
_FLUID_WARN, _FLUID_INFO, _FLUID_DBG = 2, 3, 4
_MELODIC, _DRUMS = 0, 1  # fluid_midi_channel_type
_INTERP_LINEAR = 1  # fluid_interp: FMOD's default resampler too (FluidSynth's is 4th order)
_CC_VOLUME, _CC_REVERB, _CC_CHORUS, _CC_RESET_CONTROLLERS = 7, 91, 93, 121


class SynthUnavailable(RuntimeError):
    """FluidSynth cannot be used; the message is one line that says what to install."""


def _fluidsynth():
    """The pyfluidsynth module, or SynthUnavailable naming what to install."""
    try:
        import fluidsynth
    except ModuleNotFoundError:
        raise SynthUnavailable("pyfluidsynth is not installed: pip install pyfluidsynth") from None
    except (ImportError, OSError):
        raise SynthUnavailable(f"the FluidSynth library is missing: apt-get install "
                               f"{DEBIAN_PACKAGE}") from None  # fmt: skip
    return fluidsynth


class Synth:
    """Renders loops with one SoundFont; loads it once. Not thread-safe: one per thread."""

    def __init__(self, soundfont: str | Path, sample_rate: int = SAMPLE_RATE) -> None:
        fluidsynth = _fluidsynth()
        self.soundfont = Path(soundfont)
        self.sample_rate = sample_rate
        lib = fluidsynth._fl  # the functions pyfluidsynth does not wrap, by ctypes
        for level in (_FLUID_WARN, _FLUID_INFO, _FLUID_DBG):  # we log what matters ourselves
            lib.fluid_set_log_function(level, None, None)
        self._fs = fluidsynth.Synth(
            gain=SYNTH_GAIN, samplerate=float(sample_rate), channels=16,
            **{"synth.dynamic-sample-loading": 1, "synth.audio-channels": MAX_PARTS,
               "synth.audio-groups": MAX_PARTS, "synth.effects-groups": 1,
               "synth.cpu-cores": 1, "synth.reverb.active": 1, "synth.chorus.active": 1},
        )  # fmt: skip
        self._sfid = self._fs.sfload(str(self.soundfont))
        if self._sfid < 0:
            raise SynthUnavailable(f"FluidSynth cannot load {self.soundfont}; give a .sf2/.sf3 "
                                   "file (--soundfont)")  # fmt: skip
        self._fs.set_reverb(**REVERB)
        self._process = lib.fluid_synth_process
        self._process.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                                  ctypes.c_int, ctypes.c_void_p]  # fmt: skip
        self._channel_type = lib.fluid_synth_set_channel_type
        self._channel_type.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        self._noteon, self._noteoff = fluidsynth.fluid_synth_noteon, fluidsynth.fluid_synth_noteoff
        self._choker = Choker(lib, self._fs.synth, sample_rate)
        lib.fluid_synth_set_interp_method.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.fluid_synth_set_interp_method(self._fs.synth, -1, _INTERP_LINEAR)
        self._set_rate = lib.fluid_synth_set_sample_rate
        self._set_rate.argtypes = [ctypes.c_void_p, ctypes.c_float]
        self._pin = lib.fluid_synth_pin_preset
        self._pin.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        version = lib.fluid_version_str
        version.restype = ctypes.c_char_p
        self.name = f"FluidSynth {version().decode()}"
        # Segment buffers, reused: the dry pairs of a segment past the loop end (folded back
        # onto the start), the wet bus (reverb and chorus add into the same pair), and a sink
        # for what is rendered only to be thrown away.
        self._tail = np.zeros((MAX_PARTS, 2, SEGMENT_FRAMES), np.float32)
        self._wet = np.zeros((2, SEGMENT_FRAMES), np.float32)
        self._sink = np.zeros((2 * MAX_PARTS, SEGMENT_FRAMES), np.float32)
        self._sink_rows = [int(row.ctypes.data) for row in self._sink]
        # FluidSynth's buffer addresses (reverb L, R, chorus L, R, then 8 dry rows): `_rows`
        # where a segment starts, `_at` for a call `offset` frames into it: every row moves
        # on by `_step` bytes a frame (the sink's rows by none: it holds one segment at most).
        self._rows, self._at, self._step = np.zeros((3, 4 + 2 * MAX_PARTS), np.uintp)
        self._fx_at = self._at.ctypes.data
        self._out_at = self._fx_at + 4 * self._at.itemsize
        self._frames_done = 0
        self._pinned: set[tuple[int, int]] = set()
        self._warned: set[tuple[int, int]] = set()
        self._sos = k_weighting(sample_rate // MEASURE_STRIDE)

    def preload(self, instruments) -> None:
        """Decode and pin these (part, Instrument) pairs' samples now, as a loop that plays
        them would on first use: a worker warms its first state's sounds while it loads."""
        self._prepare(tuple(instruments)[:MAX_PARTS], Sends())
        for channel in range(MAX_PARTS):
            self._fs.all_sounds_off(channel)

    def describe(self) -> dict:
        """What `/segue/status` shows: the synthesizer and the SoundFont."""
        return {"synth": self.name, "soundfont": self.soundfont.name}

    def render(self, loop: Loop, stem_dtype=np.float32) -> Clip:
        """The loop as a periodic, balanced, loudness-normalised clip; one stereo stem per part
        as `stem_dtype`; the mix float32, the exact sum of those stems times `stem_scale`."""
        spec = loop.spec
        frames = round(spec.seconds * self.sample_rate)
        parts = spec.parts
        if len(parts) > MAX_PARTS:
            raise ValueError(f"at most {MAX_PARTS} parts per loop, got {len(parts)}")
        if frames == 0:
            stems = np.zeros((len(parts), 0, 2), stem_dtype)
            return Clip(loop, parts, stems, stems.sum(axis=0, dtype=np.float32), float("-inf"), 0.0)
        self._prepare(spec.instruments, spec.sends)
        rng = np.random.default_rng(spec.seed)
        frames_per_beat = self.sample_rate * 60.0 / spec.tempo_bpm
        events: list[tuple[int, int, int, int, int]] = []  # (frame, kind, channel, key, value)
        for channel, (part, _) in enumerate(spec.instruments):
            notes = [n for n in loop.notes if n.part == part]
            spread = HUMANISE_MS.get(part, 5.0) * self.sample_rate / 1000.0
            for frame, kind, key, value in _events(notes, frames_per_beat, rng, spread, frames,
                                                   self.sample_rate):  # fmt: skip
                events.append((frame, kind, channel, key, value))
        events.sort(key=lambda e: (e[0], e[1]))  # at one frame: note-offs, chokes, note-ons
        end = max((e[0] for e in events if e[1] == OFF), default=0)
        planar = self._render_parts(events, len(parts), frames, max(frames, end))
        playing = {e[2] for e in events}
        for channel in range(len(parts)):
            if channel not in playing:
                planar[channel] = 0.0  # no notes: not even the reverb's denormal guard
        stems, mix, loudness = self._master(parts, planar, stem_dtype)
        return Clip(loop, parts, stems, mix, loudness, float(np.abs(mix).max()))

    # -- synthesis --------------------------------------------------------------------------

    def _prepare(self, instruments, sends: Sends) -> None:
        """Reset the synth (sounds off, controllers reset) and set this loop's channels."""
        fs = self._fs
        for channel in range(MAX_PARTS):
            # Not fluid_synth_system_reset: it selects the piano on all 16 channels, and
            # dynamic loading would then decode and keep the piano's samples.
            fs.all_sounds_off(channel)
            fs.cc(channel, _CC_RESET_CONTROLLERS, 0)
        for channel, (_, instrument) in enumerate(instruments):
            self._channel_type(fs.synth, channel, _DRUMS if instrument.is_drums else _MELODIC)
            self._select(channel, 128 if instrument.is_drums else 0, instrument.program)
            fs.cc(channel, _CC_VOLUME, 100)
            fs.cc(channel, _CC_REVERB, round(127 * min(1.0, max(0.0, sends.reverb))))
            fs.cc(channel, _CC_CHORUS, round(127 * min(1.0, max(0.0, sends.chorus))))
        # Setting the (same) rate starts reverb and chorus afresh, delay lines and LFO phases:
        # the same loop renders the same samples whatever was rendered before it.
        self._set_rate(fs.synth, float(self.sample_rate))
        fs.set_reverb(**REVERB)
        self._align()

    def _select(self, channel: int, bank: int, program: int) -> None:
        fs = self._fs
        if fs.program_select(channel, self._sfid, bank, program) != 0:
            # A small SoundFont may lack a kit or program: use the first of its bank.
            if (bank, program) not in self._warned:
                self._warned.add((bank, program))
                log.warning("%s has no bank %d program %d; using program 0",
                            self.soundfont.name, bank, program)  # fmt: skip
            program = 0
            fs.program_select(channel, self._sfid, bank, 0)
        if (bank, program) not in self._pinned:
            # Keep its samples decoded: the next loop that plays it starts at once.
            self._pin(fs.synth, self._sfid, bank, program)
            self._pinned.add((bank, program))
            # A preset's first note sets up state that later notes reuse (measured: its
            # first loop differs by -60 dB from the same loop later): play one now.
            fs.noteon(channel, WARM_KEY, 64)
            self._discard(FLUID_BLOCK_FRAMES * 4)
            fs.all_sounds_off(channel)

    def _render_parts(self, events: list, parts: int, loop_frames: int, end_frames: int):
        """Every part as planar stems (parts, 2, frames), everything past the loop end folded
        back onto its start; the wet bus is shared out by energy. Renders to `end_frames`
        (the last note-off) at least, then until the tails are silent.

        The loop's whole segments are rendered straight into the stems at once (FluidSynth
        adds into its buffers); the segments that reach past the loop end go through a
        buffer, one at a time until the tails are silent. Each FluidSynth call runs on to the
        next event, at most a segment."""
        limit = end_frames + round(MAX_TAIL_SECONDS * self.sample_rate)
        energy = EnergyShares(parts, self.sample_rate, SEGMENT_FRAMES)
        planar = np.zeros((parts, 2, loop_frames), np.float32)
        synth, noteon, noteoff, choke = self._fs.synth, self._noteon, self._noteoff, self._choker
        position, index, peak = 0, 0, 0.0
        choke.start()
        while position < limit:
            direct = position + SEGMENT_FRAMES <= loop_frames  # only at the start
            if direct:
                seg_frames = loop_frames // SEGMENT_FRAMES * SEGMENT_FRAMES
                dry, wet = planar[:, :, :seg_frames], np.zeros((2, seg_frames), np.float32)
            else:
                seg_frames = min(SEGMENT_FRAMES, limit - position)
                dry, wet = self._tail[:parts, :, :seg_frames], self._wet[:, :seg_frames]
                dry[...] = 0.0
                wet[...] = 0.0
            self._point(dry, wet)
            done = 0
            while done < seg_frames:
                while index < len(events) and events[index][0] <= position + done:
                    _, kind, channel, key, value = events[index]
                    if kind == ON:
                        noteon(synth, channel, key, value)
                    elif kind == OFF:
                        noteoff(synth, channel, key)
                    else:  # the key struck again: its last note, released `value` frames ago
                        choke.strike(channel, key, position + done, value)
                    index += 1
                stop = min(seg_frames, done + SEGMENT_FRAMES)  # the sink holds one segment
                if index < len(events):
                    stop = min(stop, events[index][0] - position)
                choke.due(position + done)
                stop = max(done + 1, min(stop, choke.next_due - position))
                self._synthesize(done, stop - done)
                done = stop
            # The loudest energy block of each segment: only the last can end the render.
            *levels, level = energy.add_wet(dry, wet)
            if not direct:
                _fold_add(planar, position, dry)
            peak = max([peak, *levels])
            position += seg_frames
            if position >= end_frames and level < peak * TAIL_FLOOR**2:
                break
            peak = max(peak, level)
        self._park()  # `planar` and the local wet pair are about to go: aim at the sink
        return planar

    def _align(self) -> None:
        """Run the synth on to a whole internal block (64 frames), so each loop starts on one:
        FluidSynth applies events at its block edges, and the same loop must render the same
        samples whatever was rendered before it."""
        frames = -self._frames_done % FLUID_BLOCK_FRAMES
        if frames:
            self._discard(frames)

    def _point(self, dry: np.ndarray, wet: np.ndarray) -> None:
        """Aim FluidSynth at a segment: dry (parts, 2, n) and wet (2, n), rows contiguous
        (reverb and chorus add into the same wet pair); unused parts' groups go to the sink."""
        parts = dry.shape[0]
        base, left = dry.ctypes.data, wet.ctypes.data
        rows = [left, left + wet.strides[0]] * 2
        rows += [base + p * dry.strides[0] + c * dry.strides[1]
                 for p in range(parts) for c in range(2)]  # fmt: skip
        self._rows[:] = rows + self._sink_rows[2 * parts :]
        self._step[:] = [4] * len(rows) + [0] * (len(self._rows) - len(rows))

    def _park(self) -> None:
        """Aim every FluidSynth output at the sink (which no row moves along)."""
        self._rows[:] = self._sink_rows[:4] + self._sink_rows
        self._step[:] = 0

    def _synthesize(self, offset: int, frames: int) -> None:
        """Add `frames` of the synth's output into the rows `_point` set, from `offset`. At
        most a segment: FluidSynth writes through raw addresses, and the sink holds one."""
        if frames > SEGMENT_FRAMES:
            raise ValueError(f"{frames} frames in one FluidSynth call: at most {SEGMENT_FRAMES}")
        self._frames_done += frames
        np.multiply(self._step, int(offset), out=self._at)
        self._at += self._rows
        self._process(self._fs.synth, frames, 4, self._fx_at, 2 * MAX_PARTS, self._out_at)

    def _discard(self, frames: int) -> None:
        """Run the synth on by `frames` (at most a segment), throwing its output away."""
        self._sink[:, :frames] = 0.0  # FluidSynth adds into it
        self._park()
        self._synthesize(0, frames)

    # -- the mix ----------------------------------------------------------------------------

    def _master(self, parts: tuple[str, ...], planar: np.ndarray, stem_dtype):
        """Balance the parts, normalise, compress, normalise, limit. Returns (stems (parts,
        frames, 2) as `stem_dtype` (int16: 16-bit PCM), mix (frames, 2), integrated loudness):
        every gain is folded into one envelope per part, applied in the one pass that
        interleaves the stems."""
        rate = self.sample_rate // MEASURE_STRIDE  # the loudness meter's rate
        frames = planar.shape[-1]
        k_stems = weighted(planar[..., ::MEASURE_STRIDE], self._sos)
        gains = np.ones(len(parts), np.float32)
        for i, part in enumerate(parts):
            lufs = integrated_lufs(k_stems[i], rate)
            if math.isfinite(lufs):
                gain_db = min(
                    PART_GAIN_LIMIT_DB, max(-PART_GAIN_LIMIT_DB, PART_LUFS.get(part, -24.0) - lufs)
                )
                gains[i] = 10.0 ** (gain_db / 20.0)
        k_mix = np.einsum("p,pcf->cf", gains, k_stems)
        del k_stems
        loudness = integrated_lufs(k_mix, rate)
        if not math.isfinite(loudness):
            silent = np.zeros((len(parts), frames, 2), stem_dtype)
            return silent, silent.sum(axis=0, dtype=np.float32), loudness
        mix = np.einsum("p,pcf->cf", gains, planar)  # balanced, before any gain of the bus
        gain = np.float32(10.0 ** ((TARGET_LUFS - loudness) / 20.0))
        envelope = _compressor_gain(mix, self.sample_rate, gain)
        envelope *= gain
        k_mix *= envelope[::MEASURE_STRIDE]
        loudness = integrated_lufs(k_mix, rate)
        gain = np.float32(10.0 ** ((TARGET_LUFS - loudness) / 20.0))
        envelope *= gain
        k_mix *= gain
        mix *= envelope
        limited = _limit_gain(mix, PEAK_CEILING)
        if limited is None:
            loudness = TARGET_LUFS
        else:
            envelope *= limited
            mix *= limited
            k_mix *= limited[::MEASURE_STRIDE]
            loudness = integrated_lufs(k_mix, rate)
        stored = np.dtype(stem_dtype) != np.float32
        if stored:
            del mix  # the mix is the sum of the stems as stored: no float32 copy of them all
        stems = np.empty((len(parts), frames, 2), stem_dtype)
        unit = stem_scale(stems)  # 16-bit PCM: full scale (1.0) is 32767
        part_envelope = np.empty_like(envelope)
        part = np.empty((frames, 2), np.float32) if stored else None
        for i in range(len(parts)):
            np.multiply(envelope, gains[i] / unit, out=part_envelope)
            out = part if stored else stems[i]
            for c in range(2):  # contiguous in, strided out: 6x faster than a transposed input
                np.multiply(planar[i, c], part_envelope, out=out[:, c])
            if unit != 1.0:  # to PCM: rounded, and never past full scale (it would wrap)
                np.clip(out, -1.0 / unit, 1.0 / unit, out=out)
                np.rint(out, out=out)
            if stored:
                stems[i] = part  # one contiguous conversion (a strided one costs 3x)
        if stored:
            mix = stems.sum(axis=0, dtype=np.float32)
            if unit != 1.0:
                mix *= np.float32(unit)
            return stems, mix, loudness
        interleaved = np.empty((frames, 2), np.float32)
        for c in range(2):
            interleaved[:, c] = mix[c]
        return stems, interleaved, loudness


def _fold_add(stems: np.ndarray, position: int, segment: np.ndarray) -> None:
    """stems[..., (position + i) % frames] += segment[..., i] (planar: frames last)."""
    loop_frames = stems.shape[-1]
    done = 0
    total = segment.shape[-1]
    while done < total:
        at = (position + done) % loop_frames
        take = min(total - done, loop_frames - at)
        stems[..., at : at + take] += segment[..., done : done + take]
        done += take


def _events(
    notes: list[Note],
    frames_per_beat: float,
    rng: np.random.Generator,
    spread_frames: float,
    loop_frames: int,
    rate: int,
) -> list[tuple[int, int, int, int]]:
    """(frame, kind, key, value): note-ons (value: velocity), note-offs and chokes (value:
    frames since the key's last note-off; `choke.py`), humanised: each note moves by a seeded
    offset (a note moved before the loop start plays at its end) and its velocity varies a
    little; a repeated key ends the previous note first."""
    spans: list[list[int]] = []
    ordered = sorted(notes, key=lambda n: (n.start_beats, n.pitch))
    shifts = rng.normal(0.0, spread_frames, len(ordered)).clip(
        -3 * spread_frames, 3 * spread_frames
    )
    accents = rng.normal(0.0, HUMANISE_VELOCITY, len(ordered)).clip(-12, 12)
    for note, shift, accent in zip(ordered, shifts, accents, strict=True):
        if not 0 <= note.pitch <= 127:
            continue
        on = round(note.start_beats * frames_per_beat + shift)
        off = max(on + 1, round((note.start_beats + note.duration_beats) * frames_per_beat + shift))
        if on < 0:
            on, off = on + loop_frames, off + loop_frames
        velocity = min(127, max(1, round(note.velocity + accent)))
        spans.append([on, off, note.pitch, velocity])
    spans.sort(key=lambda s: s[0])
    last_by_key: dict[int, list[int]] = {}
    for span in spans:
        previous = last_by_key.get(span[2])
        if previous is not None and previous[1] > span[0]:
            # Same key again before its note-off: a note-off would cut the new note.
            previous[1] = max(previous[0] + 1, span[0])
        last_by_key[span[2]] = span
    events = [(on, ON, key, vel) for on, _, key, vel in spans]
    events += [(off, OFF, key, 0) for _, off, key, _ in spans]
    events += choke_events(spans, loop_frames, rate)
    events.sort(key=lambda e: (e[0], e[1]))
    return events
