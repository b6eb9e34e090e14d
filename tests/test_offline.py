"""Offline render of the example session: the timeline, the audio, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from engine.conductor import _beat_frames
from engine.graph import load_graph
from engine.mixer import Mixer, MixPlan
from engine.offline import ScriptError, load_script, render
from tests.conftest import GAME, REPO

SESSION = REPO / "examples" / "session.yaml"
BLOCK = 256


@pytest.fixture(scope="module")
def session(workshop):
    return render(GAME, load_script(SESSION), seed=3, workshop=workshop)


def test_every_matching_event_is_a_transition_at_its_exit_point(session):
    graph = load_graph(GAME)
    timeline = session.timeline.to_json()
    transitions = [t for t in timeline["transitions"] if t["on"] != "once"]
    script = [item for item in load_script(SESSION) if hasattr(item.command, "name")]
    state = graph.initial
    expected = []
    for item in script:
        rule = graph.transition_for(state, item.command.name)
        if rule is not None and type(item.command).__name__ == "Event":
            expected.append((item, rule))
            state = rule.target
            if graph.states[state].once:
                state = graph.states[state].next
    assert [(t["on"], t["to"]) for t in transitions] == [
        (rule.event, rule.target) for _, rule in expected
    ]
    loops = timeline["loops"]
    for (item, rule), t in zip(expected, transitions, strict=True):
        event_frame = round(item.at_seconds * 48000)
        if rule.exit == "immediate":
            assert event_frame <= t["frame"] <= event_frame + BLOCK, (rule, t)
            continue
        # Quantized: on the grid of the loop playing at the event, the first point after it.
        playing = [lp for lp in loops if lp["frame"] <= event_frame][-1]
        state = graph.states[playing["state"]]
        step = _beat_frames(state, 48000)
        if rule.exit == "next_bar":
            step *= state.meter.beats_per_bar
        k = (t["frame"] - playing["frame"]) / step
        assert abs(k - round(k)) * step <= 1, (rule, t)
        assert 0 <= t["frame"] - event_frame <= step + 2 * BLOCK


def test_one_shot_state_returns_to_next(session):
    transitions = session.timeline.to_json()["transitions"]
    once = [t for t in transitions if t["on"] == "once"]
    assert once and once[0]["from"] == "victory" and once[0]["to"] == "explore"


def test_unknown_events_are_counted_not_fatal(session):
    assert session.conductor.counters.unknown_events == 1  # "jump" in the script


def test_audio_is_48k_stereo_and_never_clips(session):
    audio = session.audio
    assert audio.dtype == np.float32 and audio.shape[1] == 2
    assert np.abs(audio).max() <= 1.0
    assert session.conductor.mixer.counters.errors == 0


class RecordingMixer(Mixer):
    """The real mixer, remembering every plan it was handed."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.plans: list[MixPlan] = []

    def publish(self, plan: MixPlan) -> None:
        self.plans.append(plan)
        super().publish(plan)


def _gain(mixer: Mixer, layer, frame: int) -> float:
    base, fade_base = mixer.start_frame(layer.base), mixer.start_frame(layer.fade_base)
    if not base + layer.start <= frame < base + layer.end:
        return 0.0
    return layer.gain_at(frame - fade_base)


@pytest.mark.parametrize("scripted,seconds,min_plans", [(True, None, 8), (False, 40.0, 3)])
def test_no_clicks_every_plan_change_is_continuous(workshop, monkeypatch, scripted, seconds,
                                                    min_plans):
    """At each plan switch (transitions, and fresh loops when nothing happens), every layer
    keeps its gain and read position; layers appear and disappear only at zero gain.
    (The clips themselves are seamless at the loop point: see test_synth.)"""
    import engine.offline

    monkeypatch.setattr(engine.offline, "Mixer", RecordingMixer)
    script = load_script(SESSION) if scripted else []
    result = render(GAME, script, seconds=seconds, seed=3, workshop=workshop)
    mixer = result.conductor.mixer
    plans = [p for p in mixer.plans if mixer.start_frame(p.serial) is not None]
    assert len(plans) >= min_plans
    checked = 0
    for old, new in zip(plans, plans[1:], strict=False):
        at = mixer.start_frame(new.serial)

        def key(layer):
            return id(layer.audio), mixer.start_frame(layer.base) + layer.anchor

        before = {key(layer): layer for layer in old.layers}
        after = {key(layer): layer for layer in new.layers}
        for k in before.keys() | after.keys():
            g_old = _gain(mixer, before[k], at) if k in before else 0.0
            g_new = _gain(mixer, after[k], at) if k in after else 0.0
            assert abs(g_old - g_new) < 0.02, (old.serial, new.serial, g_old, g_new)
            checked += 1
        for layer in new.layers:  # a layer that is cut off must be silent by then
            if layer.end < 1 << 60:
                end = mixer.start_frame(layer.base) + layer.end
                assert _gain(mixer, layer, end - 1) < 0.02
            start = mixer.start_frame(layer.base) + layer.start
            if start >= at:
                assert _gain(mixer, layer, start) < 0.02
    assert checked >= 2 * min_plans - 2


def test_states_sound_measurably_different(workshop):
    from engine.graph import loop_spec

    graph = load_graph(GAME)
    features = {}
    for name in graph.states:
        made = workshop.make(loop_spec(graph, name, seed=11), name)
        mix = made.clip.mix[:, 0]
        spectrum = np.abs(np.fft.rfft(mix))
        freqs = np.fft.rfftfreq(len(mix), 1 / 48000)
        centroid = float((spectrum * freqs).sum() / spectrum.sum())
        notes_per_second = len(made.clip.loop.notes) / made.clip.loop.spec.seconds
        features[name] = (centroid, notes_per_second)
    names = list(features)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            (ca, da), (cb, db) = features[a], features[b]
            differs = abs(ca - cb) / max(ca, cb) > 0.08 or abs(da - db) / max(da, db) > 0.2
            assert differs, (a, b, features[a], features[b])


def test_same_seed_same_audio_other_seed_other_audio(workshop):
    script = load_script(SESSION)[:3]
    a = render(GAME, script, seconds=10, seed=5, workshop=workshop).audio
    b = render(GAME, script, seconds=10, seed=5, workshop=workshop).audio
    c = render(GAME, script, seconds=10, seed=6, workshop=workshop).audio
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("text,message", [
    ("- {at: 1, event: x}\n- {at: -1, event: y}\n", "s.yaml:2:8: 'at' must be seconds >= 0"),
    ("- {at: 1}\n", "s.yaml:1:3: expected event, state, or param"),
    ("- {event: x}\n", "s.yaml:1:3: each item needs 'at'"),
    ("at: 1\n", "a session script is a list"),
    ("- {at: 1, param: intensity, value: high}\n", "expected event, state, or param"),
])  # fmt: skip
def test_script_errors_name_the_place(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScriptError) as info:
        load_script(path)
    assert message in str(info.value).replace(str(tmp_path) + "/", "")
