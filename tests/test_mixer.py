"""The mixer, tested by calling render() on numpy buffers."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from engine.audio.mixer import EQUAL_POWER, LINEAR, S_CURVE, Layer, Mixer, MixPlan

RATE = 48_000


def ramp_audio(frames: int) -> np.ndarray:
    """A periodic test signal whose value tells the read position."""
    pos = np.arange(frames, dtype=np.float32) / frames * 0.5
    return np.stack([pos, -pos], axis=1)


def pull(mixer: Mixer, frames: int, block: int = 256) -> np.ndarray:
    out = []
    done = 0
    while done < frames:
        n = min(block, frames - done)
        out.append(mixer.render(n).copy())
        done += n
    return np.concatenate(out)


def test_one_layer_plays_periodically_from_its_anchor():
    audio = ramp_audio(1000)
    mixer = Mixer()
    mixer.publish(MixPlan(1, (Layer(audio, base=0, anchor=300, start=300),)))
    out = pull(mixer, 3000, block=77)
    assert np.all(out[:300] == 0)
    expected = np.concatenate([audio, audio, audio])[: 3000 - 300]
    np.testing.assert_array_equal(out[300:], expected)


def test_a_plan_based_on_itself_starts_at_the_next_block():
    audio = ramp_audio(500)
    mixer = Mixer()
    pull(mixer, 1000)  # 1000 frames: the next block starts mid-way through a 256 block grid
    mixer.publish(MixPlan(5, (Layer(audio, base=5, anchor=0, start=0),)))
    out = pull(mixer, 600)
    assert mixer.start_frame(5) == 1000
    assert mixer.start_frame(4) == 1000  # skipped serials resolve to the same frame
    np.testing.assert_array_equal(out[:500], audio)


@pytest.mark.parametrize("curve", [EQUAL_POWER, LINEAR, S_CURVE])
def test_crossfade_gains_follow_the_curve(curve):
    ones = np.full((4800, 2), 0.5, np.float32)
    mixer = Mixer()
    fade = 4800
    out_layer = Layer(
        ones, 0, 0, 0, fade_start=0, fade_frames=fade, gain_from=1.0, gain_to=0.0, curve=curve
    )
    mixer.publish(MixPlan(1, (out_layer,)))
    gain = pull(mixer, fade + 256)[:, 0] / 0.5
    x = np.arange(fade) / fade
    expected = {
        EQUAL_POWER: np.cos(x * np.pi / 2),
        LINEAR: 1 - x,
        S_CURVE: 0.5 + 0.5 * np.cos(np.pi * x),
    }[curve]
    np.testing.assert_allclose(gain[:fade], expected, atol=1e-4)
    assert np.all(gain[fade:] == 0)


def test_equal_power_crossfade_keeps_power_of_uncorrelated_loops():
    rng = np.random.default_rng(1)
    a = (rng.standard_normal((48000, 2)) * 0.1).astype(np.float32)
    b = (rng.standard_normal((48000, 2)) * 0.1).astype(np.float32)
    fade = 24000
    mixer = Mixer()
    mixer.publish(MixPlan(1, (
        Layer(a, 0, 0, 0, fade_start=0, fade_frames=fade, gain_from=1.0, gain_to=0.0),
        Layer(b, 0, 0, 0, fade_start=0, fade_frames=fade, gain_from=0.0, gain_to=1.0),
    )))  # fmt: skip
    out = pull(mixer, fade)
    windows = out.reshape(-1, 2400, 2)
    rms = np.sqrt((windows**2).mean(axis=(1, 2)))
    assert rms.max() / rms.min() < 1.15  # no dip or bump in the middle of the fade


def test_window_and_end_are_sample_exact_inside_a_block():
    audio = np.full((100, 2), 0.25, np.float32)
    mixer = Mixer()
    mixer.publish(MixPlan(1, (Layer(audio, 0, 0, start=1003, end=1011),)))
    out = pull(mixer, 2048, block=512)
    nonzero = np.flatnonzero(out[:, 0])
    assert (nonzero[0], nonzero[-1]) == (1003, 1010)


def test_limiter_keeps_the_output_under_the_ceiling():
    loud = np.full((1000, 2), 3.0, np.float32)
    mixer = Mixer()
    mixer.publish(MixPlan(1, (Layer(loud, 0, 0, 0),)))
    out = pull(mixer, 4096)
    assert np.abs(out).max() <= Mixer.LIMIT_CEILING + 1e-6
    assert mixer.counters.limited_blocks > 0


def test_a_broken_plan_writes_silence_and_counts():
    mixer = Mixer()
    mixer.publish(MixPlan(1, (Layer(np.zeros((0, 2), np.float32), 0, 0, 0),)))
    block = mixer.render(256)  # modulo by zero inside: must not raise
    assert np.all(block == 0)
    assert mixer.counters.errors == 1
    assert mixer.frames_rendered == 256


def test_render_allocates_no_audio_buffers():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((48000, 2)).astype(np.float32) * 0.1
    mixer = Mixer()
    stems = np.stack([a, a * 0.5])
    mixer.publish(MixPlan(1, (
        Layer(a, 0, 0, 0, fade_start=0, fade_frames=96000, gain_from=1.0, gain_to=0.0),
        Layer(a, 0, 100, 0, fade_start=0, fade_frames=96000, gain_from=0.0, gain_to=1.0),
        Layer(a, 0, 7, 0, stems=stems, stem_from=(1.0, 0.0), stem_to=(0.2, 1.0),
              stem_start=0, stem_frames=96000),
    )))  # fmt: skip
    for _ in range(10):
        mixer.render(256)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(200):
        mixer.render(256)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 4096, f"render() kept {grown} bytes over 200 blocks"


def test_gain_at_matches_what_the_audio_thread_plays():
    ones = np.ones((10000, 2), np.float32) * 0.5
    layer = Layer(
        ones, 0, 0, 0, fade_start=1000, fade_frames=3000, gain_from=0.2, gain_to=0.9, curve=S_CURVE
    )
    mixer = Mixer()
    mixer.publish(MixPlan(1, (layer,)))
    out = pull(mixer, 5000)[:, 0] / 0.5
    for frame in (0, 999, 1000, 1500, 2999, 3999, 4500):
        assert out[frame] == pytest.approx(layer.gain_at(frame), abs=1e-5)


@pytest.mark.parametrize("pcm", [False, True], ids=["float32", "16-bit"])
def test_stem_gains_ramp_linearly_and_sum_to_the_mix(pcm):
    stems = np.stack([np.full((2000, 2), 0.1, np.float32), np.full((2000, 2), 0.2, np.float32)])
    mix = stems.sum(axis=0)
    scale, tol = 1.0, 1e-6
    if pcm:  # as the daemon keeps them: the stems' scale rides on their gains
        stems, scale, tol = np.rint(stems * 32767).astype(np.int16), 1 / 32767, 2e-5
    mixer = Mixer()
    layer = Layer(
        mix,
        0,
        0,
        0,
        stems=stems,
        stem_from=(1.0, 1.0),
        stem_to=(0.0, 1.0),
        stem_start=500,
        stem_frames=1000,
        stem_scale=scale,
    )
    mixer.publish(MixPlan(1, (layer,)))
    out = pull(mixer, 2000, block=128)[:, 0]
    np.testing.assert_allclose(out[:500], 0.3, atol=tol)
    np.testing.assert_allclose(out[1500:], 0.2, atol=tol)
    expected = 0.2 + 0.1 * (1 - (np.arange(1000) / 1000))
    np.testing.assert_allclose(out[500:1500], expected, atol=1e-5 + tol)
    steps = np.abs(np.diff(out))
    assert steps.max() <= 0.1 / 1000 + 1e-6  # no step larger than the ramp allows
    for frame in (0, 700, 1499, 1800):
        gains = layer.stem_gains_at(frame)
        assert out[frame] == pytest.approx(0.1 * gains[0] + 0.2 * gains[1], abs=1e-5 + tol)


def test_a_plan_replaced_before_any_block_is_heard_with_its_successor():
    """Two plans published between blocks: both start at the next block, and a response
    carried by the first is timed by that block (not by a stale clock reading)."""
    clock = [5_000_000]
    mixer = Mixer(clock_ns=lambda: clock[0])
    mixer.render(256)
    mixer.publish(MixPlan(1))
    mixer.publish(MixPlan(2))
    clock[0] = 7_000_000
    mixer.render(256)
    assert mixer.start_frame(1) == mixer.start_frame(2) == 256
    assert mixer.seen_ns(1) == mixer.seen_ns(2) == 7_000_000
