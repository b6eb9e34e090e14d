"""The pull-based mixer: `render(frames) -> float32 stereo`, pulled by every sink.

The control side prepares an immutable `MixPlan` and publishes it with one reference
assignment (`Mixer.publish`). The audio thread reads the plan once per block and mixes
its layers from preallocated buffers. Nothing in `render` locks, allocates arrays,
logs, does I/O or raises.

Time is the mixer's own frame counter. A layer's times are offsets from a *base*: the
frame at which plan number `base` was first rendered (base 0 is frame 0). So a plan
published "now" can say "start the crossfade at the first block that hears me"
(base = its own serial, offset 0) and the audio thread resolves it exactly; the control
side reads the resolved frame back with `Mixer.start_frame(serial)`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

LINEAR, EQUAL_POWER, S_CURVE = 0, 1, 2
CURVES = {"linear": LINEAR, "equal_power": EQUAL_POWER, "s_curve": S_CURVE}

# Plans remembered for base resolution; far more than can be in flight at once.
_HISTORY = 1024
_MASK = _HISTORY - 1
NEVER = 1 << 62  # an `end` that never comes


@dataclass(frozen=True, slots=True, eq=False)
class Layer:
    """One periodic clip on the timeline, with a gain ramp.

    `anchor`, `start` and `end` are offsets from the start frame of plan `base`:
    `audio` plays with audio[0] at `anchor` and repeats; it is audible in [start, end).
    The fade is timed from plan `fade_base`: the gain goes from `gain_from` to `gain_to`
    over [fade_start, fade_start + fade_frames). A layer that has faded to 0 is done.

    With `stem_to` set, the layer plays `stems` (parts, frames, 2) instead of `audio`, each
    stem's gain moving linearly from `stem_from` to `stem_to` over
    [stem_start, stem_start + stem_frames) timed from plan `stem_base` (vertical layering,
    ducking: smoothed, so no zipper noise). A stem sample times `stem_scale` is its float
    value (16-bit PCM stems: 1 / 32767).
    """

    audio: np.ndarray  # (frames, 2) float32, periodic
    base: int
    anchor: int
    start: int
    end: int = NEVER
    fade_base: int = 0
    fade_start: int = 0
    fade_frames: int = 0
    gain_from: float = 1.0
    gain_to: float = 1.0
    curve: int = EQUAL_POWER
    tag: str = ""
    stems: np.ndarray | None = None
    stem_from: tuple[float, ...] | None = None
    stem_to: tuple[float, ...] | None = None
    stem_base: int = 0
    stem_start: int = 0
    stem_frames: int = 0
    stem_scale: float = 1.0

    def stem_gains_at(self, offset: int) -> tuple[float, ...] | None:
        """Each stem's gain at a frame offset from `stem_base` (control side)."""
        if self.stem_to is None:
            return None
        if self.stem_frames <= 0 or offset >= self.stem_start + self.stem_frames:
            return self.stem_to
        if offset <= self.stem_start:
            return self.stem_from
        x = (offset - self.stem_start) / self.stem_frames
        return tuple(a + (b - a) * x for a, b in zip(self.stem_from, self.stem_to, strict=True))

    def gain_at(self, offset: int) -> float:
        """The gain at a frame offset from `fade_base` (control side)."""
        if self.fade_frames <= 0 or offset >= self.fade_start + self.fade_frames:
            return self.gain_to if offset >= self.fade_start else self.gain_from
        if offset < self.fade_start:
            return self.gain_from
        x = (offset - self.fade_start) / self.fade_frames
        return _shape(self.gain_from, self.gain_to, x, self.curve)


@dataclass(frozen=True, slots=True, eq=False)
class MixPlan:
    serial: int
    layers: tuple[Layer, ...] = ()


def _shape(a: float, b: float, x: float, curve: int) -> float:
    if curve == LINEAR:
        return a + (b - a) * x
    if curve == S_CURVE:
        return a + (b - a) * (0.5 - 0.5 * math.cos(math.pi * x))
    # Equal power: a rising gain follows sin, a falling one cos, so two opposite
    # uncorrelated layers keep constant power across the fade.
    if b >= a:
        return a + (b - a) * math.sin(0.5 * math.pi * x)
    return b + (a - b) * math.cos(0.5 * math.pi * x)


@dataclass
class MixerCounters:
    blocks: int = 0
    frames: int = 0
    errors: int = 0
    limited_blocks: int = 0
    plans_seen: int = 0
    first_sound_ns: int = 0  # clock_ns() when the first block that is not silence was mixed


class Mixer:
    """Mixes the current plan; `render` runs on the audio thread."""

    LIMIT_CEILING = 0.98  # master limiter ceiling, linear
    LIMIT_RELEASE_PER_BLOCK = 0.02

    def __init__(self, max_block_frames: int = 8192, clock_ns=time.monotonic_ns) -> None:
        self.max_block_frames = max_block_frames
        self.clock_ns = clock_ns  # the offline renderer passes its virtual clock
        self.plan = MixPlan(serial=0)
        self.frames_rendered = 0
        self.counters = MixerCounters()
        # Audio-thread state, all preallocated.
        self._out = np.zeros((max_block_frames, 2), np.float32)
        self._tmp = np.zeros((max_block_frames, 2), np.float32)
        self._gain = np.zeros(max_block_frames, np.float32)
        self._stem = np.zeros((max_block_frames, 2), np.float32)
        self._stem_gain = np.zeros(max_block_frames, np.float32)
        self._ramp = np.arange(max_block_frames, dtype=np.float32)
        self._abs = np.zeros((max_block_frames, 2), np.float32)
        self._starts = np.zeros(_HISTORY, np.int64)
        self._seen_ns = np.zeros(_HISTORY, np.int64)
        self._seen_serial = 0
        self._limiter_gain = 1.0

    # -- control side -------------------------------------------------------------

    def publish(self, plan: MixPlan) -> None:
        """Hand a new plan to the audio thread (one reference assignment)."""
        self.plan = plan

    def start_frame(self, serial: int) -> int | None:
        """The frame at which plan `serial` was first rendered, or None if not yet."""
        if serial == 0:
            return 0
        if serial > self._seen_serial or serial <= self._seen_serial - _HISTORY:
            return None
        return int(self._starts[serial & _MASK])

    def seen_ns(self, serial: int) -> int | None:
        """time.monotonic_ns() when the block that first carried plan `serial` was mixed."""
        if serial > self._seen_serial or serial <= 0:
            return None
        return int(self._seen_ns[serial & _MASK])

    # -- audio thread -------------------------------------------------------------

    def render(self, frames: int) -> np.ndarray:
        """Mix the next `frames` frames; returns a view valid until the next call.

        Audio thread: no allocation of audio buffers, no locks, no I/O; never raises
        (an error writes silence and is counted).
        """
        out = self._out[:frames]
        try:
            self._mix(out, frames)
        except Exception:  # noqa: BLE001 - the stream must go on
            out.fill(0.0)
            self.counters.errors += 1
        self.frames_rendered += frames
        self.counters.blocks += 1
        self.counters.frames += frames
        return out

    def _mix(self, out: np.ndarray, frames: int) -> None:
        plan = self.plan
        now = self.frames_rendered
        if plan.serial != self._seen_serial:
            # Plans published since the last block (and any skipped) start here, and are
            # heard from now: a response carried by a skipped plan is timed by this block.
            seen_ns = self.clock_ns()
            for serial in range(self._seen_serial + 1, plan.serial + 1):
                self._starts[serial & _MASK] = now
                self._seen_ns[serial & _MASK] = seen_ns
            self._seen_serial = plan.serial
            self.counters.plans_seen += 1
        starts = self._starts
        out.fill(0.0)
        tmp = self._tmp[:frames]
        gain = self._gain[:frames]
        for layer in plan.layers:
            t = now - int(starts[layer.base & _MASK]) if layer.base else now
            tf = now - int(starts[layer.fade_base & _MASK]) if layer.fade_base else now
            lo = max(layer.start - t, 0)
            hi = min(layer.end - t, frames)
            if layer.gain_to == 0.0 and tf >= layer.fade_start + layer.fade_frames:
                continue  # faded out
            if lo >= hi:
                continue
            if layer.stem_to is None:
                self._read(layer.audio, t + lo - layer.anchor, tmp[lo:hi])
            else:
                ts = now - int(starts[layer.stem_base & _MASK]) if layer.stem_base else now
                self._mix_stems(layer, t + lo - layer.anchor, ts, lo, hi, tmp)
            self._apply_gain(layer, tf, lo, hi, tmp, gain)
            np.add(out[lo:hi], tmp[lo:hi], out=out[lo:hi])
        self._limit(out, frames)

    @staticmethod
    def _read(audio: np.ndarray, position: int, dest: np.ndarray) -> None:
        """Copy len(dest) frames of periodic `audio` from `position` (slices, no copies)."""
        length = audio.shape[0]
        pos = position % length
        frames = dest.shape[0]
        first = min(frames, length - pos)
        dest[:first] = audio[pos : pos + first]
        done = first
        while done < frames:
            chunk = min(frames - done, length)
            dest[done : done + chunk] = audio[:chunk]
            done += chunk

    def _mix_stems(self, layer: Layer, position: int, ts: int, lo: int, hi: int, tmp) -> None:
        """tmp[lo:hi] = sum of stems, each with its (ramping) gain; `ts` is the block start
        from stem_base."""
        dest = tmp[lo:hi]
        dest.fill(0.0)
        stem_buf = self._stem[lo:hi]
        ramp_start, ramp_frames = layer.stem_start, layer.stem_frames
        in_ramp = ramp_frames > 0 and ts + hi > ramp_start and ts + lo < ramp_start + ramp_frames
        if in_ramp:
            x = self._stem_gain[lo:hi]
            np.add(self._ramp[lo:hi], ts - ramp_start, out=x)
            np.multiply(x, 1.0 / ramp_frames, out=x)
            np.clip(x, 0.0, 1.0, out=x)
        after = ts + lo >= ramp_start + ramp_frames
        unit = layer.stem_scale
        for i, stem in enumerate(layer.stems):
            a, b = layer.stem_from[i], layer.stem_to[i]
            if not in_ramp or a == b:
                g = b if (after or ts + lo >= ramp_start) else a
                if g == 0.0:
                    continue
                self._read(stem, position, stem_buf)
                g *= unit  # the stem's samples to float, with its gain
                if g != 1.0:
                    np.multiply(stem_buf, g, out=stem_buf)
            else:
                self._read(stem, position, stem_buf)
                self._ramp_gain(stem_buf, x, a * unit, b * unit)
            np.add(dest, stem_buf, out=dest)

    def _ramp_gain(self, buf: np.ndarray, x: np.ndarray, a: float, b: float) -> None:
        """buf *= a + (b - a) * x, in preallocated scratch."""
        g = self._gain[: x.shape[0]]
        np.multiply(x, b - a, out=g)
        np.add(g, a, out=g)
        np.multiply(buf, g[:, np.newaxis], out=buf)

    def _apply_gain(self, layer: Layer, t: int, lo: int, hi: int, tmp, gain) -> None:
        """Scale tmp[lo:hi] by the layer's gain; `t` is the block start from fade_base."""
        fade_end = layer.fade_start + layer.fade_frames
        if layer.fade_frames <= 0 or t + lo >= fade_end:
            g = layer.gain_to if t + lo >= layer.fade_start else layer.gain_from
            if g != 1.0:
                np.multiply(tmp[lo:hi], g, out=tmp[lo:hi])
            return
        if t + hi <= layer.fade_start:
            if layer.gain_from != 1.0:
                np.multiply(tmp[lo:hi], layer.gain_from, out=tmp[lo:hi])
            return
        # The block overlaps the fade: build the ramp x in [0, 1] for each frame.
        x = gain[lo:hi]
        np.add(self._ramp[lo:hi], t - layer.fade_start, out=x)
        np.multiply(x, 1.0 / layer.fade_frames, out=x)
        np.clip(x, 0.0, 1.0, out=x)
        a, b = layer.gain_from, layer.gain_to
        if layer.curve == LINEAR:
            np.multiply(x, b - a, out=x)
        elif layer.curve == S_CURVE:
            np.multiply(x, math.pi, out=x)
            np.cos(x, out=x)
            np.multiply(x, -0.5 * (b - a), out=x)
            np.add(x, 0.5 * (b - a), out=x)
        elif b >= a:
            np.multiply(x, 0.5 * math.pi, out=x)
            np.sin(x, out=x)
            np.multiply(x, b - a, out=x)
        else:
            np.multiply(x, 0.5 * math.pi, out=x)
            np.cos(x, out=x)
            np.multiply(x, a - b, out=x)
            a = b
        np.add(x, a, out=x)
        # float32 cos(pi/2) is -4e-8: keep gains inside their end points.
        np.clip(x, min(layer.gain_from, layer.gain_to), max(layer.gain_from, layer.gain_to), out=x)
        np.multiply(tmp[lo:hi], x[:, np.newaxis], out=tmp[lo:hi])

    def _limit(self, out: np.ndarray, frames: int) -> None:
        """Master limiter: block-rate gain with instant attack, slow release, then a
        hard ceiling as the last guard. Loops are loudness-normalised with headroom,
        so on the shipped graphs this rarely engages."""
        absolute = self._abs[:frames]
        np.abs(out, out=absolute)
        peak = float(absolute.max()) if frames else 0.0
        if peak > 0.0 and not self.counters.first_sound_ns:
            self.counters.first_sound_ns = self.clock_ns()  # start-up figure
        g = self._limiter_gain
        if peak * g > self.LIMIT_CEILING:
            g = self.LIMIT_CEILING / peak
            self.counters.limited_blocks += 1
        if g != 1.0:
            np.multiply(out, g, out=out)
            np.clip(out, -self.LIMIT_CEILING, self.LIMIT_CEILING, out=out)
            g = min(1.0, g + self.LIMIT_RELEASE_PER_BLOCK)
        self._limiter_gain = g
