"""Offline render of the example session: the timeline, the audio, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from engine.audio.mixer import Mixer
from engine.control.clock import beat_frames as _beat_frames
from engine.score.load import load_graph
from engine.tools.render import ScriptError, load_script, render
from tests.conftest import GAME, REPO, RecordingMixer

SESSION = REPO / "examples" / "session.yaml"
BLOCK = 256


@pytest.fixture(scope="module")
def session(workshop):
    return render(GAME, load_script(SESSION), seed=3, workshop=workshop)


EXPECTED = [  # (trigger, from, to) for examples/session.yaml
    ("explore", "idle", "explore"),
    ("enemy_spotted", "explore", "combat"),
    ("enemy_defeated", "combat", "victory"),
    ("once", "victory", "explore"),
    ("intensity > 0.85", "explore", "combat"),
    ("player_died", "combat", "defeat"),
    ("respawn", "defeat", "idle"),
]


def test_every_matching_event_is_a_transition_at_its_exit_point(session):
    graph = load_graph(GAME)
    timeline = session.timeline.to_json()
    transitions = timeline["transitions"]
    assert [(t["on"], t["from"], t["to"]) for t in transitions] == EXPECTED
    responses = [r for r in timeline["other"] if r["kind"] == "response"]
    loops = timeline["loops"]
    for t, response in zip(transitions, responses, strict=True):
        assert response["event"] == t["on"]
        trigger = response["frame"]
        if t["exit"] == "immediate":
            assert trigger <= t["frame"] <= trigger + BLOCK, t
            continue
        # Quantized: the first exit point at least two blocks after the trigger, on the grid
        # of the loop that was playing.
        playing = [lp for lp in loops if lp["frame"] <= trigger][-1]
        state = graph.states[playing["state"]]
        beat = _beat_frames(state, 48000)
        step, phase = {"next_beat": (beat, 0), "next_bar": (beat * state.meter.beats_per_bar, 0),
                       "loop_end": (playing["frames"], 0)}.get(
            t["exit"], (playing["frames"], (state.cue(t["exit"]) or 0) * beat))  # fmt: skip
        k = (t["frame"] - playing["frame"] - phase) / step
        assert abs(k - round(k)) * step <= 1, (t, k)
        assert trigger + 2 * BLOCK <= t["frame"] <= trigger + 2 * BLOCK + step + 1, t


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


def _gain(mixer: Mixer, layer, frame: int, stem: int | None = None) -> float:
    """A layer's gain at an absolute frame: its fade times a stem's gain (the loudest)."""
    base, fade_base = mixer.start_frame(layer.base), mixer.start_frame(layer.fade_base)
    if not base + layer.start <= frame < base + layer.end:
        return 0.0
    gain = layer.gain_at(frame - fade_base)
    stems = layer.stem_gains_at(frame - mixer.start_frame(layer.stem_base))
    if stems is not None:
        gain *= stems[stem] if stem is not None else max(stems)
    return gain


@pytest.mark.parametrize("scripted,seconds,min_plans", [(True, None, 8), (False, 40.0, 3)])
def test_no_clicks_every_plan_change_is_continuous(
    workshop, monkeypatch, scripted, seconds, min_plans
):
    """At each plan switch (transitions, and fresh loops when nothing happens), every layer
    keeps its gain and read position; layers appear and disappear only at zero gain.
    (The clips themselves are seamless at the loop point: see test_synth.)"""
    import engine.control.engine

    monkeypatch.setattr(engine.control.engine, "Mixer", RecordingMixer)
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
            any_version = before[k] if k in before else after[k]
            stems = [None] if any_version.stems is None else range(len(any_version.stems))
            for stem in stems:
                g_old = _gain(mixer, before[k], at, stem) if k in before else 0.0
                g_new = _gain(mixer, after[k], at, stem) if k in after else 0.0
                assert abs(g_old - g_new) < 0.02, (old.serial, new.serial, stem, g_old, g_new)
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
    from engine.score.graph import loop_spec

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
    # FluidSynth reuses voices and their state: a render repeats to within about -40 dBFS,
    # not bit for bit (another seed differs by far more).
    assert np.abs(a - b).max() <= 0.02
    assert np.abs(a - c).max() > 0.1


@pytest.mark.parametrize("text,message", [
    ("- {at: 1, event: x}\n- {at: -1, event: y}\n", "s.yaml:2:8: 'at' must be seconds >= 0"),
    ("- {at: 1}\n", "s.yaml:1:3: expected exactly one of event, state, param, stinger, mute"),
    ("- {event: x}\n", "s.yaml:1:3: each item needs 'at'"),
    ("at: 1\n", "a session script is a list"),
    ("- {at: 1, param: intensity, value: high}\n",
     "s.yaml:1:3: /segue/param argument 2 must be a number, got str"),
    ("- {at: 1, param: intensity}\n", "s.yaml:1:3: /segue/param takes 2 argument(s)"),
    ("- {at: 1, event: x, state: y}\n", "s.yaml:1:3: expected exactly one of event, state"),
    ("- {at: 1, event: x, valu: 2}\n", "s.yaml:1:3: unknown key 'valu' with 'event'"),
])  # fmt: skip
def test_script_errors_name_the_place(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScriptError) as info:
        load_script(path)
    assert message in str(info.value).replace(str(tmp_path) + "/", "")


def test_example_session_plays_the_models_loops_and_bridges(model_workshop):
    result = render(GAME, load_script(SESSION), seed=1, workshop=model_workshop)
    timeline = result.timeline.to_json()
    assert {lp["generator"] for lp in timeline["loops"]} == {"model"}
    bridges = [row for row in timeline["other"] if row["kind"] == "bridge"]
    assert bridges and {b["generator"] for b in bridges} == {"model"}
    assert result.conductor.pool.counters.fallbacks == 0
    # The music never drops out: no half second of the session below -45 dBFS (a model loop
    # with an empty bar, or a bar cut short by the token budget, fell below -60 dBFS).
    mono = result.audio.mean(axis=1)
    window = 24_000
    rms = np.sqrt(np.mean(mono[: len(mono) // window * window].reshape(-1, window) ** 2, axis=1))
    assert 20 * np.log10(rms.min() + 1e-12) > -45.0
