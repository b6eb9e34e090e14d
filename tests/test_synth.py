"""The SoundFont synth: exact length, stems, seamless loop point, loudness and peak."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyloudnorm
import pytest

from engine.making.rules import RuleGenerator
from engine.making.soundfont import find_soundfont
from engine.making.synth import PEAK_CEILING, TARGET_LUFS, Synth
from engine.score.gm import instrument
from engine.score.music import (
    SAMPLE_RATE,
    Instrument,
    Loop,
    LoopSpec,
    Meter,
    Note,
    Sends,
    stem_scale,
)

ALL_PARTS = (
    ("drums", "standard"),
    ("bass", "acoustic_bass"),
    ("pad", "strings"),
    ("lead", "flute"),
)


@pytest.fixture(scope="module")
def synth() -> Synth:
    return Synth(find_soundfont())  # loading the sf3 takes ~3 s: once per module


def make_spec(mood="happy", meter=None, bars=2, tempo=120.0, parts=ALL_PARTS, seed=0, mode="major"):
    instruments = tuple((part, instrument(part, name)) for part, name in parts)
    return LoopSpec(
        "test", mood, mode, 2, tempo, meter or Meter(4, 4), bars, instruments, seed=seed
    )


def rules_loop(**kwargs) -> Loop:
    return RuleGenerator().generate(make_spec(**kwargs))


def seam_ok(audio: np.ndarray) -> tuple[float, float]:
    """(step across the loop point, 99.9th percentile of steps inside)."""
    inside = np.abs(np.diff(audio, axis=0)).max(axis=1)
    return float(np.abs(audio[0] - audio[-1]).max()), float(np.percentile(inside, 99.9))


@pytest.mark.parametrize(
    "meter, bars, tempo",
    [
        (Meter(4, 4), 2, 120.0),
        (Meter(3, 4), 3, 97.0),
        (Meter(6, 8), 2, 133.3),
        (Meter(4, 4), 1, 71.0),
    ],
)
def test_frames_exact_and_stems_in_part_order(synth, meter, bars, tempo):
    parts = (("lead", "flute"), ("drums", "standard"), ("bass", "acoustic_bass"))
    loop = rules_loop(meter=meter, bars=bars, tempo=tempo, parts=parts)
    clip = synth.render(loop)
    assert clip.frames == loop.spec.frames
    assert clip.parts == ("lead", "drums", "bass")
    assert clip.stems.shape == (3, loop.spec.frames, 2) and clip.stems.dtype == np.float32
    assert clip.mix.dtype == np.float32
    np.testing.assert_allclose(clip.stems.sum(axis=0), clip.mix, atol=1e-5)
    assert all(np.abs(stem).max() > 1e-3 for stem in clip.stems)  # every part sounds


@pytest.mark.parametrize("mood", ["happy", "calm", "tense", "sad"])
def test_loudness_and_peak(synth, mood):
    clip = synth.render(rules_loop(mood=mood, bars=4, seed=11))
    # Played as a loop: three periods, so BS.1770's blocks also straddle the loop point.
    looped = np.tile(clip.mix, (3, 1)).astype(np.float64)
    measured = pyloudnorm.Meter(SAMPLE_RATE).integrated_loudness(looped)
    assert abs(measured - TARGET_LUFS) <= 1.0
    # What the clip reports is what a meter reads: within 0.1 LU, as Segue's meter reads every
    # second sample (0.04 LU from the full-rate BS.1770 meter) and pyloudnorm's K-weighting is
    # a design of its own (another 0.04 LU).
    assert abs(clip.loudness_lufs - measured) < 0.1
    assert clip.peak == pytest.approx(np.abs(clip.mix).max())
    assert clip.peak <= PEAK_CEILING <= 0.891


def test_loud_transients_are_limited_below_ceiling(synth):
    # Sparse hard drums: at the target loudness their raw peaks would exceed the ceiling.
    spec = make_spec(parts=(("drums", "power"),), bars=2)
    hits = (Note("drums", 36, 0.0, 0.25, 127), Note("drums", 49, 0.0, 2.0, 127),
            Note("drums", 38, 4.0, 0.25, 127))  # fmt: skip
    clip = synth.render(Loop(spec, hits, "test"))
    assert clip.peak <= PEAK_CEILING
    assert clip.loudness_lufs == pytest.approx(TARGET_LUFS, abs=2.0)
    np.testing.assert_allclose(clip.stems.sum(axis=0), clip.mix, atol=1e-5)


@pytest.mark.parametrize("mood, meter", [("happy", Meter(4, 4)), ("sad", Meter(3, 4)),
                                         ("tense", Meter(6, 8))])  # fmt: skip
def test_loop_point_is_seamless(synth, mood, meter):
    clip = synth.render(rules_loop(mood=mood, meter=meter, bars=2))
    step, typical = seam_ok(clip.mix)
    assert step <= typical
    for stem in clip.stems:
        stem_step, stem_typical = seam_ok(stem)
        assert stem_step <= max(stem_typical, 1e-4)


def test_notes_past_the_end_wrap_onto_the_start(synth):
    spec = make_spec(parts=(("pad", "strings"),), bars=1)
    # Starts on the last beat and holds two more: half of it belongs at the loop start.
    loop = Loop(spec, (Note("pad", 60, 3.0, 3.0, 100), Note("pad", 64, 3.0, 3.0, 100)), "test")
    clip = synth.render(loop)
    beat_frames = round(SAMPLE_RATE * 60 / spec.tempo_bpm)
    head_rms = np.sqrt(np.mean(clip.mix[:beat_frames] ** 2))
    assert head_rms > 0.05  # still sounding at the start, not silence
    step, typical = seam_ok(clip.mix)
    assert step <= typical


def centroid_hz(clip) -> float:
    mono = clip.mix.mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono))
    freqs = np.fft.rfftfreq(mono.shape[0], 1 / SAMPLE_RATE)
    return float((spectrum * freqs).sum() / spectrum.sum())


def flux(clip, frame: int = 1024) -> float:
    """Mean positive spectral change per frame, relative to the mean spectrum: onsets."""
    mono = clip.mix.mean(axis=1)
    usable = mono.shape[0] // frame * frame
    spectra = np.abs(np.fft.rfft(mono[:usable].reshape(-1, frame) * np.hanning(frame), axis=1))
    rise = np.maximum(np.diff(spectra, axis=0), 0).sum(axis=1)
    return float(rise.mean() / spectra.sum(axis=1).mean())


def chroma(clip) -> np.ndarray:
    """Spectral power per pitch class (60 Hz to 2 kHz)."""
    mono = clip.mix.mean(axis=1)
    power = np.abs(np.fft.rfft(mono)) ** 2
    freqs = np.fft.rfftfreq(mono.shape[0], 1 / SAMPLE_RATE)
    keep = (freqs > 60) & (freqs < 2000)
    pitch_classes = np.round(12 * np.log2(freqs[keep] / 440.0) + 69).astype(int) % 12
    return np.bincount(pitch_classes, weights=power[keep], minlength=12)


def test_moods_sound_measurably_different(synth):
    clips = {
        mood: synth.render(rules_loop(mood=mood, mode=mode, bars=4, seed=2))
        for mood, mode in (
            ("happy", "major"),
            ("calm", "major"),
            ("tense", "minor"),
            ("sad", "minor"),
        )
    }
    # Arousal: brighter and busier. (Every part is set to its own loudness, so a mood no
    # longer brightens the mix by playing its drums louder: 1.10-1.20x measured.)
    for energetic, quiet in (("happy", "calm"), ("tense", "sad")):
        assert centroid_hz(clips[energetic]) > 1.07 * centroid_hz(clips[quiet])
        assert flux(clips[energetic]) > flux(clips[quiet])
    # Valence at equal arousal (in the mode a designer pairs with it): other harmony.
    for bright, dark in (("happy", "tense"), ("calm", "sad")):
        assert np.corrcoef(chroma(clips[bright]), chroma(clips[dark]))[0, 1] < 0.9


def test_different_seeds_render_different_audio(synth):
    first = synth.render(rules_loop(seed=1))
    second = synth.render(rules_loop(seed=2))
    assert not np.allclose(first.mix, second.mix, atol=1e-3)


def test_empty_loop_is_silent(synth):
    spec = make_spec(parts=(("lead", "flute"),), bars=1)
    clip = synth.render(Loop(spec, (), "test"))
    assert clip.frames == spec.frames and not np.any(clip.mix)
    assert clip.loudness_lufs == float("-inf") and clip.peak == 0.0


def test_missing_kit_falls_back_to_first_program(synth):
    odd_kit = Instrument("odd", 99, is_drums=True)  # no bank 128 program 99 in a GM font
    spec = LoopSpec("test", "happy", "major", 0, 120.0, Meter(4, 4), 1, (("drums", odd_kit),))
    clip = synth.render(Loop(spec, (Note("drums", 36, 0.0, 0.5, 110),), "test"))
    assert np.abs(clip.mix).max() > 0.01


def rms_db(audio: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(audio, dtype=np.float64)) + 1e-30))


def test_reverb_tail_is_folded_onto_the_loop_start(synth):
    # One short note mid-loop: its dry sound has died before the loop point, its reverb has not.
    def render(reverb: float):
        spec = replace(make_spec(parts=(("lead", "flute"),), bars=1),
                       sends=Sends(reverb=reverb, chorus=0.0))  # fmt: skip
        return synth.render(Loop(spec, (Note("lead", 72, 2.0, 0.5, 100),), "test"))

    dry, wet = render(0.0), render(0.9)
    head = slice(0, SAMPLE_RATE // 10)  # the first 100 ms: no note plays there
    assert rms_db(wet.mix[head]) > rms_db(dry.mix[head]) + 6  # the tail of the last pass
    # Seamless wet: the level runs on across the loop point, and no step there.
    edge = SAMPLE_RATE // 20
    assert abs(rms_db(wet.mix[-edge:]) - rms_db(wet.mix[:edge])) < 3.0
    step, typical = seam_ok(wet.mix)
    assert step <= max(typical, 1e-4)


def test_states_loops_and_stingers_sit_within_3_lu(synth):
    from engine.score.graph import loop_spec
    from engine.score.load import load_graph
    from tests.conftest import GAME

    graph = load_graph(GAME)
    meter = pyloudnorm.Meter(SAMPLE_RATE)

    def looped_lufs(clip) -> float:
        return meter.integrated_loudness(np.tile(clip.mix, (3, 1)).astype(np.float64))

    levels = {name: looped_lufs(synth.render(RuleGenerator().generate(loop_spec(graph, name, 3))))
              for name in graph.states}  # fmt: skip
    assert max(levels.values()) - min(levels.values()) <= 3.0, levels
    # A stinger (one phrase, then silence) is normalised on its phrase: the loop's level.
    stinger = graph.stingers["hit"]
    spec = replace(loop_spec(graph, "combat", 0), instruments=(("lead", stinger.instrument),))
    clip = synth.render(Loop(spec, tuple(replace(n, part="lead") for n in stinger.notes), "s"))
    assert abs(clip.loudness_lufs - TARGET_LUFS) <= 3.0


def test_fluidsynth_writes_unused_parts_inside_the_sink(synth):
    # A sparse one-part loop: long calls between its events, deep into its first pass. The
    # silent groups of the three parts it lacks go to a one-segment sink, never past it.
    spec = make_spec(parts=(("lead", "flute"),), bars=4)
    sink_start = synth._sink.ctypes.data
    sink_end = sink_start + synth._sink.nbytes
    process, calls = synth._process, []

    def checked(handle, frames, *args):
        calls.append(frames)
        assert all(sink_start <= row <= sink_end - 4 * frames for row in synth._at[4 + 2 :])
        return process(handle, frames, *args)

    synth._process = checked
    try:
        clip = synth.render(Loop(spec, (Note("lead", 72, 0.0, 0.5, 100),), "test"))
    finally:
        synth._process = process
    assert max(calls) > SAMPLE_RATE // 10 and np.abs(clip.mix).max() > 0.01


def _voices_while_rendering(synth: Synth, loop: Loop) -> tuple[float, int]:
    """FluidSynth's own count of its active voices over a render: (time-weighted mean, max)."""
    import ctypes

    import fluidsynth

    count = fluidsynth._fl.fluid_synth_get_active_voice_count
    count.argtypes, count.restype = [ctypes.c_void_p], ctypes.c_int
    process, voices = synth._process, []

    def counted(handle, frames, *args):
        voices.append((count(handle), frames))
        return process(handle, frames, *args)

    synth._process = counted
    try:
        synth.render(loop)
    finally:
        synth._process = process
    sounding, frames = np.array(voices).T
    return float((sounding * frames).sum() / frames.sum()), int(sounding.max())


def _restrikes(program: int, keys=(60, 64, 67), beats=16) -> Loop:
    """A pad striking one chord on every beat, each note held for 0.7 of a beat."""
    spec = replace(make_spec(parts=(("pad", "strings"),), bars=beats // 4),
                   instruments=(("pad", Instrument("pad", program, False)),),
                   sends=Sends(0.0, 0.0))  # fmt: skip
    notes = tuple(Note("pad", key, float(beat), 0.7, 90) for beat in range(beats) for key in keys)
    return Loop(spec, notes, "test")


def test_a_key_struck_again_ends_what_is_left_of_its_last_note(synth, monkeypatch):
    # A string pad restriking a triad every beat: each release (over a second in this
    # SoundFont) used to ring on beside the next two or three strikes of the same keys.
    loop = _restrikes(48)
    before = synth._choker.choked
    mean, most = _voices_while_rendering(synth, loop)
    assert synth._choker.choked - before >= 2 * 3 * 15  # two voices a note, every restrike
    monkeypatch.setattr(synth._choker, "strike", lambda *args: None)  # FluidSynth alone
    alone_mean, alone_most = _voices_while_rendering(synth, loop)
    assert mean <= 0.8 * alone_mean and most < alone_most, (mean, most, alone_mean, alone_most)


@pytest.mark.parametrize("program", [48, 50, 89])  # strings, synth strings, warm pad
def test_a_pad_struck_again_crossfades_as_before(synth, monkeypatch, program):
    # The old voice keeps its own release while the new note swells in: a choke at the
    # restrike itself left a dip of 2-9 dB there in a slow pad (50: 4.5 dB, 89: 9 dB).
    def level_at_restrikes(clip) -> np.ndarray:
        x = clip.stems[0].astype(np.float64).mean(axis=1)
        rms = np.sqrt(np.convolve(x**2, np.ones(480) / 480, "same"))  # 10 ms
        beat = SAMPLE_RATE // 2  # 120 bpm
        return np.array([20 * np.log10(rms[b - beat // 20 : b + beat // 2].min() + 1e-12)
                         for b in range(beat, 8 * beat, beat)])  # fmt: skip

    choked = level_at_restrikes(synth.render(_restrikes(program, keys=(57,), beats=8)))
    monkeypatch.setattr(synth._choker, "strike", lambda *args: None)
    alone = level_at_restrikes(synth.render(_restrikes(program, keys=(57,), beats=8)))
    assert np.abs(choked - alone).max() < 1.0, (choked - alone).round(1)


def test_keys_struck_once_are_not_cut(synth):
    # Different keys every beat: no voice is choked, each release rings out as the
    # SoundFont made it.
    spec = make_spec(parts=(("pad", "strings"),), bars=1)
    notes = tuple(Note("pad", 60 + beat, float(beat), 0.5, 90) for beat in range(4))
    before = synth._choker.choked
    _, most = _voices_while_rendering(synth, Loop(spec, notes, "test"))
    assert synth._choker.choked == before and most == 8


def test_stems_rendered_as_stored_sum_exactly_to_the_mix(synth):
    # The worker asks for 16-bit PCM stems (its storage): no float32 copy of them is made,
    # and the mix is the float32 sum of the stems as stored, bit for bit.
    clip = synth.render(rules_loop(), np.int16)
    assert clip.stems.dtype == np.int16 and clip.mix.dtype == np.float32
    unit = stem_scale(clip.stems)
    summed = clip.stems.sum(axis=0, dtype=np.float32) * np.float32(unit)
    assert np.array_equal(summed, clip.mix) and unit == 1 / 32767
    # ... at the float render's level (a render repeats only to about -40 dB: compare levels)
    floats = synth.render(rules_loop())
    level = [np.sqrt((np.asarray(c.mix, np.float64) ** 2).mean()) for c in (clip, floats)]
    assert abs(20 * np.log10(level[0] / level[1])) < 0.2
    # The same mastering written as 16-bit is the float stems rounded to the nearest step.
    planar = np.random.default_rng(0).standard_normal((2, 2, 48_000)).astype(np.float32) * 0.05
    stored, _, _ = synth._master(("bass", "lead"), planar, np.int16)
    exact, _, _ = synth._master(("bass", "lead"), planar, np.float32)
    error = stored * stem_scale(stored) - exact
    assert stored.dtype == np.int16 and np.abs(error).max() <= 0.501 / 32767
    assert (
        clip.peak == float(np.abs(clip.mix).max()) and abs(clip.loudness_lufs - TARGET_LUFS) < 0.5
    )
