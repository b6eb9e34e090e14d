"""Layer arithmetic with made-up plan frames: fades, ducks, one-shots, stems, a change."""

from __future__ import annotations

import pytest

from engine.audio.mixer import EQUAL_POWER, LINEAR, NEVER, Layer
from engine.control import layers
from engine.control.clock import Main
from tests.control.fakes import CALM, FIGHT, RATE, FakeClip, FakeLoop, rule

STARTED = {1: 0, 2: 4_800, 3: 9_600}.get  # plan serial -> the frame it started at


def loop(base: int = 1, **kw) -> Layer:
    clip = FakeClip(96_000)
    kw.setdefault("stem_from", (1.0, 0.5))
    kw.setdefault("stem_to", kw["stem_from"])
    kw.setdefault("tag", "loop")
    return Layer(clip.mix, base=base, anchor=0, start=0, stems=clip.stems, **kw)


def stinger() -> Layer:
    return layers.one_shot(FakeClip(9_600), 1, 100, 5_000, 10, 480, 0.5, EQUAL_POWER, "stinger:hit")


@pytest.mark.parametrize(
    ("part", "muted", "solo", "gain"),
    [
        ("lead", set(), "", 1.0),
        ("lead", {"lead"}, "", 0.0),
        ("lead", set(), "lead", 1.0),
        ("pad", set(), "lead", 0.0),
        ("pad", {"lead"}, "", 1.0),
    ],
)
def test_part_gain(part, muted, solo, gain) -> None:
    assert layers.part_gain(part, muted, solo) == gain


@pytest.mark.parametrize(
    ("state", "params", "muted", "solo", "mixing", "targets"),
    [
        (FIGHT, {}, set(), "", False, None),  # no curves, nothing muted: the mix plays
        (FIGHT, {}, {"pad"}, "", True, (0.0, 1.0)),
        (CALM, {"intensity": 0.25}, set(), "", False, (1.0, 0.25)),  # lead follows intensity
        (CALM, {"intensity": 0.25}, set(), "pad", True, (1.0, 0.0)),
        (CALM, {}, set(), "", False, (1.0, 0.0)),  # an unset parameter reads 0
    ],
)
def test_stem_targets(state, params, muted, solo, mixing, targets) -> None:
    parts = ("pad", "lead")
    assert layers.stem_targets(state, parts, params, muted, solo, mixing) == targets


@pytest.mark.parametrize(
    ("layer", "now", "gains"),
    [
        (loop(stem_from=None, stem_to=None), 0, (1.0, 1.0)),  # plays the mix: unit gains
        (loop(stem_from=(1.0, 0.0), stem_to=(0.0, 1.0), stem_base=9, stem_frames=100), 50,
         (1.0, 0.0)),  # its plan has not started: where it starts from
        (loop(stem_from=(1.0, 0.0), stem_to=(0.0, 1.0), stem_base=2, stem_frames=100), 4_850,
         (0.5, 0.5)),
        (loop(stem_from=(1.0, 0.0), stem_to=(0.0, 1.0), stem_base=2, stem_frames=100), 9_999,
         (0.0, 1.0)),
    ],
)  # fmt: skip
def test_stems_now(layer, now, gains) -> None:
    assert layers.stems_now(layer, STARTED, now) == gains


def test_a_one_shot_fades_in_at_start_and_its_stems_out_after_stop() -> None:
    shot = stinger()
    assert (shot.start, shot.end, shot.fade_frames, shot.gain_from, shot.gain_to) == (
        100, 5_480, 10, 0.0, 0.5)  # fmt: skip
    assert (shot.stem_from, shot.stem_to, shot.stem_start, shot.stem_frames) == (
        (1.0, 1.0), (0.0, 0.0), 5_000, 480)  # fmt: skip


def test_fade_out_all_keeps_stingers_drops_the_silent_and_fades_the_rest() -> None:
    playing = loop(base=1)
    silent = loop(base=1, gain_from=1.0, gain_to=0.0, fade_base=1, fade_frames=100)
    shot = stinger()
    out = layers.fade_out_all([playing, silent, shot], 0, 20_000, 2_400, LINEAR, at=20_000,
                              start_frame=STARTED)  # fmt: skip
    assert out[1] is shot
    assert len(out) == 2
    faded = out[0]
    assert (faded.fade_base, faded.fade_start, faded.fade_frames) == (0, 20_000, 2_400)
    assert (faded.gain_from, faded.gain_to, faded.curve) == (1.0, 0.0, LINEAR)


@pytest.mark.parametrize(
    ("base", "kept"),
    [
        (2, True),  # started at 4_800, its fade-in starts later: silent yet, heard after
        (9, False),  # its plan never started: replaced before it was heard
    ],
)
def test_fade_out_all_and_a_layer_still_to_fade_in(base, kept) -> None:
    later = loop(base=base, gain_from=0.0, gain_to=1.0, fade_base=base, fade_start=16_000,
                 fade_frames=100)  # fmt: skip
    out = layers.fade_out_all([later], 0, 20_000, 100, EQUAL_POWER, at=20_000,
                              start_frame=STARTED)  # fmt: skip
    assert len(out) == kept
    assert all(x.gain_from == 0.0 and x.gain_to == 0.0 for x in out)


def test_duck_dips_loops_from_their_current_stems_and_leaves_stingers() -> None:
    shot = stinger()
    out = layers.duck([loop(), shot], serial=7, factor=0.5, frames=1_440, start_frame=STARTED,
                      now=0)  # fmt: skip
    assert out[1] is shot
    ducked = out[0]
    assert (ducked.stem_from, ducked.stem_to) == ((1.0, 0.5), (0.5, 0.25))
    assert (ducked.stem_base, ducked.stem_start, ducked.stem_frames) == (7, 0, 1_440)


@pytest.mark.parametrize(
    ("layer", "now", "done"),
    [
        (loop(end=1_000), 999, False),
        (loop(end=1_000), 1_000, True),
        (loop(base=9, end=1_000), 50_000, False),  # its plan has not started
        (loop(gain_to=0.0, fade_base=2, fade_start=100, fade_frames=100), 4_999, False),
        (loop(gain_to=0.0, fade_base=2, fade_start=100, fade_frames=100), 5_000, True),
        (loop(gain_to=0.5, fade_base=2, fade_frames=100), 1_000_000, False),  # not to silence
        (loop(end=NEVER), 10**12, False),
    ],
)
def test_finished(layer, now, done) -> None:
    assert layers.finished(layer, STARTED, now) is done


def change(name: str, *, exit_at=None, bridge=None, grid_anchor=0, now=10_000):
    grid = Main(CALM, FakeClip(384_000), layer=None, anchor=grid_anchor)
    where = layers.Where(now, 256, RATE, STARTED)
    return layers.change(rule(name), FIGHT, FakeClip(192_000), None, bridge, [loop()],
                         serial=5, exit_at=exit_at, grid=grid, where=where)  # fmt: skip


def test_an_immediate_change_rides_on_its_plan() -> None:
    plan = change("done")  # exit next_beat, but laid out as if now: exit_at None
    assert (plan.base, plan.offset, plan.entry_at, plan.anchor) == (5, 0, 0, 0)
    # fade_out 2 beats on the grid's tempo (calm, 120), fade_in 0.25 s
    assert (plan.fade_out, plan.fade_in, plan.end) == (48_000, 12_000, 12_000)
    old, incoming = plan.layers
    assert (old.fade_base, old.fade_start, old.fade_frames, old.gain_to) == (5, 0, 48_000, 0.0)
    assert incoming is plan.incoming
    assert (incoming.base, incoming.fade_frames, incoming.gain_from) == (5, 12_000, 0.0)
    assert not plan.ducked


def test_a_quantized_change_uses_absolute_frames_and_may_duck() -> None:
    ducking = rule("enemy").__class__(**{**_fields(rule("enemy")), "duck_db": -6.0})
    grid = Main(CALM, FakeClip(384_000), None, 0)
    where = layers.Where(10_000, 256, RATE, STARTED)
    plan = layers.change(ducking, FIGHT, FakeClip(192_000), None, None, [loop()], serial=5,
                         exit_at=96_000, grid=grid, where=where)  # fmt: skip
    assert (plan.base, plan.offset, plan.entry_at, plan.anchor) == (0, 96_000, 96_000, 96_000)
    assert plan.ducked
    old = plan.layers[0]
    assert old.stem_to == pytest.approx((10 ** (-6 / 20), 0.5 * 10 ** (-6 / 20)))
    assert (old.fade_base, old.fade_start) == (0, 96_000)


def test_an_entry_keeps_the_position_in_the_loop() -> None:
    plan = change("sneak", exit_at=144_000, grid_anchor=0)
    assert plan.entry_at == 144_000
    assert plan.anchor == 144_000 - 144_000 % 192_000


def test_a_bridge_plays_first_and_the_loop_comes_in_after_it() -> None:
    bridge = FakeClip(48_000, loop=FakeLoop("b1"))
    plan = change("enemy", exit_at=96_000, bridge=bridge)
    shot = plan.layers[1]
    assert shot.tag == "bridge:b1"
    assert (shot.start, shot.end) == (96_000, 96_000 + 48_000 + 480)
    assert plan.entry_at == 96_000 + 48_000
    assert plan.incoming.fade_frames == 480  # the seam after a bridge is a short swap fade
    assert plan.end == plan.entry_at + 480


def _fields(transition) -> dict:
    return {f: getattr(transition, f) for f in transition.__dataclass_fields__}


def test_loops_left_fading_by_earlier_changes_past_the_limit_are_stolen() -> None:
    # Four loops that earlier changes sent away (fading from plan 2, started at 4_800, over
    # 96_000 frames from these gains), one still playing, and a stinger. At now=10_000 each
    # leaving loop sits at gain_from * (1 - 5_200 / 96_000) on a linear fade.
    leaving = [loop(tag=f"away{g}", gain_from=g, gain_to=0.0, fade_base=2, fade_frames=96_000,
                    curve=LINEAR) for g in (0.9, 0.2, 0.6, 0.4)]  # fmt: skip
    shot = stinger()
    grid = Main(CALM, FakeClip(384_000), layer=None, anchor=0)
    where = layers.Where(10_000, 256, RATE, STARTED)
    plan = layers.change(rule("done"), FIGHT, FakeClip(192_000), None, None,
                         [*leaving, loop(tag="main"), shot], serial=5, exit_at=None, grid=grid,
                         where=where)  # fmt: skip
    tags = [x.tag for x in plan.layers]
    assert tags == ["away0.2", "away0.4", "away0.9", "away0.6", "main", shot.tag, "loop"]
    assert len([x for x in plan.layers if layers.leaving(x)]) == layers.MAX_LEAVING + 3
    steal = round(layers.STEAL_SECONDS * RATE)
    at_now = 1 - 5_200 / 96_000
    for stolen, gain in zip(plan.layers[:2], (0.2, 0.4), strict=True):
        # from where it is, to silence, over the steal fade from the change's own plan
        assert (stolen.fade_base, stolen.fade_start, stolen.fade_frames) == (5, 0, steal)
        assert stolen.gain_from == pytest.approx(gain * at_now)
        assert stolen.gain_to == 0.0
        assert layers.finished(stolen, {**{1: 0, 2: 4_800}, 5: 10_256}.get, 10_256 + steal)
    # the two loudest keep the change's own fade-out, like the loop that was playing
    assert {x.fade_frames for x in plan.layers[2:5]} == {plan.fade_out}


@pytest.mark.parametrize("limit", [layers.MAX_LEAVING, 1_000])
def test_rapid_changes_mix_a_bounded_number_of_loops(monkeypatch, limit) -> None:
    # A change every 1_000 frames, each fading out over two beats (48_000): without a limit
    # (1_000) the loops of the last 48 changes are all still sounding.
    monkeypatch.setattr(layers, "MAX_LEAVING", limit)
    starts = {}
    playing: list = [loop(tag="first")]
    most = 0
    for serial in range(1, 60):
        now = 10_000 + 1_000 * serial
        starts[serial] = now + 256
        where = layers.Where(now, 256, RATE, starts.get)
        grid = Main(CALM, FakeClip(384_000), layer=None, anchor=0)
        plan = layers.change(rule("done"), FIGHT, FakeClip(192_000), None, None, playing,
                             serial=serial, exit_at=None, grid=grid, where=where)  # fmt: skip
        playing = [x for x in plan.layers if not layers.finished(x, starts.get, now + 256)]
        most = max(most, len(playing))
    # the kept leaving loops, the one sent away now, the new one, and the one stolen now
    bound = layers.MAX_LEAVING + 3
    assert (most <= bound) is (limit == layers.MAX_LEAVING), most
