"""Layer arithmetic: fades, ducks, one-shots and stem gains, as new immutable `Layer`s.

Pure: where the mixer is needed, a function takes `start_frame` (plan serial -> the absolute
frame it began at, None while unplayed) and the frame `now`, so each answer can be checked
against made-up frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import NamedTuple

from engine.audio.mixer import CURVES, Layer
from engine.control.clock import Main, beat_frames, entry_offset
from engine.score.graph import State, Transition
from engine.score.music import Clip, stem_scale

StartFrame = Callable[[int], int | None]


class Where(NamedTuple):
    """Where the mixer is: its frame, its block, its rate, and plan serial -> start frame."""

    now: int
    block_frames: int
    sample_rate: int
    start_frame: StartFrame


SWAP_FADE_SECONDS = 0.01  # loop-to-loop seam inside a state, and bridge seams: click-free
DUCK_SECONDS = 0.03  # how fast the first-stage duck comes in
MUTE_FADE_SECONDS = 0.05  # a part muted or soloed from the live view: quick, click-free
# Changes that come faster than their fades leave loops fading out under one another, and
# the audio thread mixes every one of them (a soak's forced-state storm stacked 17, and a
# block took 3-6 ms of CPU to mix instead of 0.2). A change keeps the MAX_LEAVING loudest
# loops that earlier changes sent away; the others fade out over STEAL_SECONDS from where
# they are, like an audio engine stealing voices past its limit.
MAX_LEAVING = 2
STEAL_SECONDS = 0.02


def is_stinger(layer: Layer) -> bool:
    return layer.tag.startswith("stinger:")


def one_shot(
    clip: Clip,
    base: int,
    start: int,
    stop: int,
    fade_in: int,
    fade_out: int,
    gain: float,
    curve: int,
    tag: str,
) -> Layer:
    """A clip played once from `start`: faded in there, and out over `fade_out` frames from
    `stop` (through its stems' ramp, since the layer's own fade is the fade-in)."""
    ones = tuple(1.0 for _ in clip.parts)
    return Layer(
        clip.mix,
        base=base,
        anchor=start,
        start=start,
        end=stop + fade_out,
        fade_base=base,
        fade_start=start,
        fade_frames=fade_in,
        gain_from=0.0,
        gain_to=gain,
        curve=curve,
        tag=tag,
        stems=clip.stems,
        stem_scale=stem_scale(clip.stems),
        stem_from=ones,
        stem_to=tuple(0.0 for _ in clip.parts),
        stem_base=base,
        stem_start=stop,
        stem_frames=fade_out,
    )


def loop_layer(
    clip: Clip, targets: tuple[float, ...] | None, base: int, *, anchor: int, start: int, **fade
) -> Layer:
    """A looping clip, its stems held at `targets` (None: all at unit gain)."""
    return Layer(
        clip.mix,
        base=base,
        anchor=anchor,
        start=start,
        tag=clip.loop.loop_id,
        stems=clip.stems,
        stem_scale=stem_scale(clip.stems),
        stem_from=targets,
        stem_to=targets,
        **fade,
    )


def part_gain(part: str, muted: set[str], solo: str) -> float:
    return 0.0 if part in muted or (solo and part != solo) else 1.0


def stem_targets(
    state: State,
    parts: Iterable[str],
    params: dict[str, float],
    muted: set[str],
    solo: str,
    mixing_parts: bool,
) -> tuple[float, ...] | None:
    """Stem gains for a state's layer curves at `params`, times mute and solo (None: all 1)."""
    if not state.layers and not mixing_parts:
        return None
    curves = {layer.part: layer for layer in state.layers}
    return tuple(
        (curves[p].gain(params.get(curves[p].param, 0.0)) if p in curves else 1.0)
        * part_gain(p, muted, solo)
        for p in parts
    )


def stems_now(layer: Layer, start_frame: StartFrame, now: int) -> tuple[float, ...]:
    """The stem gains `layer` plays at frame `now`."""
    if layer.stem_to is None:
        return tuple(1.0 for _ in range(len(layer.stems)))
    base = start_frame(layer.stem_base)
    if base is None:
        return layer.stem_from
    return layer.stem_gains_at(now - base)


def follow(
    layer: Layer,
    current: tuple[float, ...],
    target: tuple[float, ...] | None,
    serial: int,
    frames: int,
) -> Layer:
    """`layer`'s stems ramp from `current` to `target` over `frames`, from plan `serial`."""
    return replace(
        layer, stem_from=current, stem_to=target, stem_base=serial, stem_start=0, stem_frames=frames
    )


def begins(layer: Layer, start_frame: StartFrame) -> int | None:
    """The absolute frame `layer` is first heard at (None while its plan is unplayed)."""
    base = start_frame(layer.base)
    return None if base is None else base + layer.start


def leaving(layer: Layer) -> bool:
    """A loop (or bridge) that an earlier change sent away: fading to silence."""
    return layer.gain_to == 0.0 and not is_stinger(layer)


def gain_now(layer: Layer, start_frame: StartFrame, now: int) -> float:
    """The layer's own gain at frame `now` (its fade's start while its plan is unplayed)."""
    fade_base_start = start_frame(layer.fade_base)
    return layer.gain_from if fade_base_start is None else layer.gain_at(now - fade_base_start)


def steal(
    playing: list[Layer], serial: int, frames: int, start_frame: StartFrame, now: int
) -> tuple[list[Layer], list[Layer]]:
    """(kept, stolen): of the loops already leaving, all but the MAX_LEAVING loudest at `now`
    fade from their gain there to silence over `frames`, from plan `serial`. A loop whose
    fade ends within `frames` of `now` anyway is left as it is, among the stolen."""
    away, going = [], set()
    for i, x in enumerate(playing):
        if leaving(x):
            if finished(x, start_frame, now + frames):
                going.add(i)
            else:
                away.append((gain_now(x, start_frame, now), i))
    gone = {i: gain for gain, i in sorted(away)[: max(0, len(away) - MAX_LEAVING)]}
    if not gone and not going:
        return playing, []
    stolen = [
        x if i in going else replace(x, fade_base=serial, fade_start=0, fade_frames=frames,
                                     gain_from=gone[i], gain_to=0.0)
        for i, x in enumerate(playing) if i in going or gone.get(i, 0.0) > 0.0
    ]  # fmt: skip
    return [x for i, x in enumerate(playing) if i not in gone and i not in going], stolen


def fade_out_all(
    layers: list[Layer],
    base: int,
    offset: int,
    fade: int,
    curve: int,
    *,
    at: int,
    start_frame: StartFrame,
) -> list[Layer]:
    """Every layer but stingers fades to silence from (base, offset), estimated at frame
    `at`; a layer already silent there and never heard again is left out."""
    kept = []
    for layer in layers:
        if is_stinger(layer):
            kept.append(layer)  # a stinger rings out over the change
            continue
        gain = gain_now(layer, start_frame, at)
        first = begins(layer, start_frame)
        if gain <= 0.0 and (first is None or first >= at or layer.gain_to == 0.0):
            continue  # silent now and never heard again
        kept.append(
            replace(
                layer,
                fade_base=base,
                fade_start=offset,
                fade_frames=fade,
                gain_from=gain,
                gain_to=0.0,
                curve=curve,
            )
        )
    return kept


def duck(
    layers: list[Layer], serial: int, factor: float, frames: int, start_frame: StartFrame, now: int
) -> list[Layer]:
    """First-stage answer: loops (not stingers) dip by `factor` over `frames` from plan
    `serial`, from the stem gains they play at `now`."""
    out = []
    for layer in layers:
        if layer.stems is None or is_stinger(layer):
            out.append(layer)
            continue
        current = stems_now(layer, start_frame, now)
        out.append(follow(layer, current, tuple(g * factor for g in current), serial, frames))
    return out


def finished(layer: Layer, start_frame: StartFrame, now: int) -> bool:
    """Played to its end, or faded to silence, by frame `now`."""
    base = start_frame(layer.base)
    fade_base = start_frame(layer.fade_base)
    ended = base is not None and base + layer.end <= now
    faded = (
        fade_base is not None
        and layer.gain_to == 0.0
        and fade_base + layer.fade_start + layer.fade_frames <= now
    )
    return ended or faded


def shift(notes, beats: float):
    """Notes moved `beats` quarter notes later (earlier when negative)."""
    return tuple(replace(n, start_beats=n.start_beats + beats) for n in notes)


@dataclass(frozen=True)
class Change:
    """A transition laid out in frames: the layers of its plan, and where things happen.

    (base, offset) is the exit point: `offset` frames after plan `base` starts, or with base
    0 the absolute frame `offset`. Frames below are on the same base."""

    layers: list[Layer]  # the whole plan: the old layers fading out, a bridge, the new loop
    incoming: Layer  # the destination's loop
    base: int
    offset: int
    entry_at: int  # the destination's loop comes in here (after the bridge, if any)
    anchor: int  # the frame of the destination loop's first sample
    end: int  # its fade-in is over here
    fade_out: int
    fade_in: int
    ducked: bool  # the old loops dip while the exit point is waited for


def change(
    rule: Transition,
    target: State,
    clip: Clip,
    targets: tuple[float, ...] | None,
    bridge: Clip | None,
    playing: list[Layer],
    *,
    serial: int,
    exit_at: int | None,
    grid: Main | None,
    where: Where,
) -> Change:
    """Lay out `rule` from the layers `playing`, `where` the mixer is: the plan `serial` carries
    it, the exit point is `exit_at` (None: now), `grid` is the loop that sets the grid."""
    now, block_frames, sample_rate, start_frame = where
    grid_state = grid.state if grid else target
    fade_out = rule.fade_out.frames(grid_state.tempo_bpm, grid_state.meter, sample_rate)
    fade_in = rule.fade_in.frames(target.tempo_bpm, target.meter, sample_rate)
    swap = round(SWAP_FADE_SECONDS * sample_rate)
    curve = CURVES[rule.curve]
    anchored = grid is not None and grid.anchor is not None
    base, offset = (serial, 0) if exit_at is None else (0, exit_at)
    if rule.entry != "start" and anchored and exit_at is None:
        base, offset = 0, now + 2 * block_frames  # entries need absolute frames
    started = start_frame(base)
    playing, stolen = steal(playing, serial, round(STEAL_SECONDS * sample_rate), start_frame, now)
    # Everything now playing (but stingers) leaves at the exit point.
    out = stolen + fade_out_all(
        playing,
        base,
        offset,
        fade_out,
        curve,
        at=(now if started is None else started) + offset,
        start_frame=start_frame,
    )
    ducked = exit_at is not None and rule.duck_db < 0
    if ducked:
        factor = 10.0 ** (rule.duck_db / 20.0)
        out = duck(out, serial, factor, round(DUCK_SECONDS * sample_rate), start_frame, now)
    entry_at = offset
    if bridge is not None:
        entry_at = offset + bridge.frames
        tag = "bridge:" + bridge.loop.loop_id
        out.append(
            one_shot(
                bridge, base, offset, entry_at, min(fade_in, bridge.frames), swap, 1.0, curve, tag
            )
        )
    anchor = entry_at
    if rule.entry != "start" and anchored:
        into = (offset if base == 0 else now) - grid.anchor
        old_beat, new_beat = beat_frames(grid.state, sample_rate), beat_frames(target, sample_rate)
        anchor = entry_at - entry_offset(rule.entry, into, clip.frames, old_beat, new_beat)
    fade_frames = swap if bridge is not None else fade_in
    incoming = loop_layer(
        clip,
        targets,
        base,
        anchor=anchor,
        start=entry_at,
        fade_base=base,
        fade_start=entry_at,
        fade_frames=fade_frames,
        gain_from=0.0,
        curve=curve,
    )
    out.append(incoming)
    return Change(
        out,
        incoming,
        base,
        offset,
        entry_at,
        anchor,
        entry_at + fade_frames,
        fade_out,
        fade_in,
        ducked,
    )
