"""`segue export`: every file of a clip pool is re-read and checked against the manifest.

The graph is tests/fixtures/export/graph.yaml (two short states in D major 4/4 and Bb minor
3/4, one stinger); the stinger's MIDI file is written here from a table of notes. WAV files
are parsed chunk by chunk with `struct`, independently of the writer.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import struct
from pathlib import Path

import mido
import numpy as np
import pyloudnorm
import pytest
import soundfile

from engine.audio.mixer import Mixer
from engine.control.conductor import Conductor
from engine.making.pool import LoopPool
from engine.making.soundfont import find_soundfont
from engine.making.workshop import InlineMaker
from engine.score.load import load_graph
from engine.tools import export

FIXTURE = Path(__file__).parent / "fixtures" / "export" / "graph.yaml"
# The stinger, written in C: a C major triad, an eighth note long.
HIT_PITCHES = (60, 64, 67)
HIT_TICKS = 240  # of 480 per beat
LSB_24 = 2.0**-23  # one step of 24-bit PCM, as soundfile reads it back
# A render repeats to within about -40 dBFS, not bit for bit: FluidSynth reuses voices and
# their state (measured up to 0.009); another loop differs by far more (0.1 and up).
RENDER_REPEATS = 0.02


def write_hit(path: Path) -> None:
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    for pitch in HIT_PITCHES:
        track.append(mido.Message("note_on", note=pitch, velocity=110, time=0))
    for index, pitch in enumerate(HIT_PITCHES):
        track.append(mido.Message("note_off", note=pitch, time=HIT_TICKS if index == 0 else 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.save(str(path))


@pytest.fixture(scope="module")
def graph_path(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("graph")
    shutil.copy(FIXTURE, folder / "graph.yaml")
    write_hit(folder / "stingers" / "hit.mid")
    return folder / "graph.yaml"


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="segue")
    export.register(parser.add_subparsers())
    args = parser.parse_args(["export", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def pool(graph_path, tmp_path_factory) -> tuple[Path, dict]:
    """The command as a user runs it, with the small pip SoundFont (loads in well under 1 s)."""
    out = tmp_path_factory.mktemp("pool")
    sf2 = export_soundfont()
    code = cli("--graph", str(graph_path), "--per-state", "1", "--out", str(out), "--stems",
               "--seed", "7", "--no-model", "--soundfont", str(sf2))  # fmt: skip
    assert code == 0
    return out, json.loads((out / "manifest.json").read_text())


def export_soundfont() -> Path:
    from engine.making.soundfont import _pretty_midi_soundfont

    path = _pretty_midi_soundfont()
    return path if path is not None else find_soundfont(None)


def riff_chunks(path: Path) -> tuple[int, dict[bytes, bytes]]:
    """(RIFF size field, {chunk id: body}) of a WAV file."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    riff_size = struct.unpack_from("<I", data, 4)[0]
    chunks, offset = {}, 12
    while offset < len(data):
        tag, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        chunks[tag] = data[offset + 8 : offset + 8 + size]
        offset += 8 + size + size % 2
    assert offset == len(data) == riff_size + 8
    return riff_size, chunks


def smpl_loops(body: bytes) -> list[tuple[int, ...]]:
    """The loops of a smpl chunk: (cue id, type, start, end, fraction, play count)."""
    header = struct.unpack_from("<9I", body, 0)
    count, extra = header[7], header[8]
    assert header[2] == round(1e9 / 48000)  # sample period, ns
    assert len(body) == 36 + 24 * count + extra
    return [struct.unpack_from("<6I", body, 36 + 24 * i) for i in range(count)]


def all_wavs(clip: dict) -> list[str]:
    return [clip["wav"], *clip["stems"].values()]


# -- the writer, byte for byte --------------------------------------------------------------


def test_wav_bytes_are_pcm24_with_an_inclusive_smpl_loop(tmp_path):
    audio = np.array([[0.5, -0.5], [1.0, -1.0]], dtype=np.float32)
    clipped = export.write_wav(tmp_path / "two.wav", audio)
    expected = bytes.fromhex(
        "52494646 74000000 57415645"  # RIFF, 116 bytes follow, WAVE
        "666d7420 10000000 0100 0200 80bb0000 00650400 0600 1800"  # fmt: PCM, 2 ch, 48 kHz,
        # 288000 B/s, 6 B/frame, 24 bits
        "64617461 0c000000 000040 0000c0 ffff7f 000080"  # data: +0.5 -0.5 | +1.0→max, -1.0
        "736d706c 3c000000 00000000 00000000 61510000 3c000000 00000000"  # smpl: 20833 ns/
        "00000000 00000000 01000000 00000000"  # sample, unity note 60, one loop, no extra
        "00000000 00000000 00000000 01000000 00000000 00000000"  # id 0, forward, 0..1, ∞
    )
    assert (tmp_path / "two.wav").read_bytes() == expected
    assert clipped == 1  # +1.0 is one step above the largest 24-bit value


def test_a_one_shot_has_no_loop_chunk(tmp_path):
    export.write_wav(tmp_path / "once.wav", np.zeros((3, 2), np.float32), looped=False)
    _, chunks = riff_chunks(tmp_path / "once.wav")
    assert list(chunks) == [b"fmt ", b"data"]


# -- a whole pool -----------------------------------------------------------------------------


def test_the_pool_holds_one_loop_per_state_and_each_stinger_in_each_state(pool):
    out, manifest = pool
    kinds = sorted((c["state"], c["kind"], c.get("stinger", "")) for c in manifest["clips"])
    assert kinds == [("calm", "loop", ""), ("calm", "stinger", "hit"),
                     ("fight", "loop", ""), ("fight", "stinger", "hit")]  # fmt: skip
    listed = {name for c in manifest["clips"] for name in [*all_wavs(c), c["midi"]]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk - {"manifest.json"} == listed  # every file is described, none is missing
    assert manifest["wav_encoding"] == "pcm_24" and manifest["seed"] == 7


def test_every_wav_is_playable_of_the_declared_length_and_loops_sample_exactly(pool):
    out, manifest = pool
    checked = 0
    for clip in manifest["clips"]:
        for name in all_wavs(clip):
            info = soundfile.info(str(out / name))
            assert (info.samplerate, info.channels, info.subtype) == (48000, 2, "PCM_24")
            assert info.frames == clip["frames"]
            _, chunks = riff_chunks(out / name)
            fmt = struct.unpack_from("<HHIIHH", chunks[b"fmt "])
            assert fmt == (1, 2, 48000, 48000 * 6, 6, 24)
            assert len(chunks[b"data"]) == clip["frames"] * 6
            if clip["kind"] == "loop":
                loops = smpl_loops(chunks[b"smpl"])
                assert loops == [(0, 0, 0, clip["frames"] - 1, 0, 0)]
                assert (clip["loop_start_frames"], clip["loop_end_frames"]) == (
                    0, clip["frames"] - 1)  # fmt: skip
            else:
                assert b"smpl" not in chunks and clip["loop_end_frames"] is None
            checked += 1
    assert checked == 2 + 2 + 3 + 2  # two mixes, calm's 2 stems, fight's 3, two stingers


def test_loop_length_is_the_states_bars_at_its_tempo(pool):
    _, manifest = pool
    graph = load_graph(manifest["graph"])
    for clip in manifest["clips"]:
        state = graph.states[clip["state"]]
        assert clip["tempo_bpm"] == state.tempo_bpm and clip["meter"] == str(state.meter)
        assert clip["key"]["name"] == {"calm": "D major", "fight": "Bb minor"}[clip["state"]]
        if clip["kind"] == "loop":
            assert clip["bars"] == state.bars
            assert clip["frames"] == round(state.beats_per_loop * 60 / state.tempo_bpm * 48000)


def test_manifest_loudness_and_peak_match_the_audio(pool):
    out, manifest = pool
    meter = pyloudnorm.Meter(48000)
    for clip in manifest["clips"]:
        audio, _ = soundfile.read(str(out / clip["wav"]), dtype="float64")
        assert np.abs(audio).max() == pytest.approx(clip["peak"], abs=2e-6)
        assert clip["peak_dbfs"] <= -1.0 + 1e-6  # the synth's ceiling
        assert clip["clipped_samples"] == 0
        if clip["kind"] == "loop":
            tiled = np.tile(audio, (3, 1))  # played as a loop: blocks straddle the loop point
            # pyloudnorm's K-weighting is its own design, Segue's meter is BS.1770's:
            # they differ by up to 0.06 LU on these clips.
            assert meter.integrated_loudness(tiled) == pytest.approx(clip["loudness_lufs"], abs=0.1)


def test_stems_sum_to_the_mix(pool):
    out, manifest = pool
    for clip in (c for c in manifest["clips"] if c["kind"] == "loop"):
        mix, _ = soundfile.read(str(out / clip["wav"]), dtype="float64")
        stems = [soundfile.read(str(out / p), dtype="float64")[0] for p in clip["stems"].values()]
        assert sorted(clip["stems"]) == sorted(clip["instruments"])
        assert np.abs(sum(stems) - mix).max() <= (len(stems) + 1) * LSB_24


def test_midi_has_one_track_per_part_with_its_gm_program(pool):
    out, manifest = pool
    graph = load_graph(manifest["graph"])
    for clip in (c for c in manifest["clips"] if c["kind"] == "loop"):
        state = graph.states[clip["state"]]
        midi = mido.MidiFile(str(out / clip["midi"]))
        assert len(midi.tracks) == 1 + len(state.instruments)
        conductor = {m.type: m for m in midi.tracks[0]}
        assert mido.tempo2bpm(conductor["set_tempo"].tempo) == pytest.approx(state.tempo_bpm)
        assert (conductor["time_signature"].numerator, conductor["time_signature"].denominator
                ) == (state.meter.beats_per_bar, state.meter.beat_unit)  # fmt: skip
        loop_ticks = round(state.beats_per_loop * midi.ticks_per_beat)
        for track, (part, instrument) in zip(midi.tracks[1:], state.instruments, strict=True):
            programs = [m for m in track if m.type == "program_change"]
            notes = [m for m in track if m.type == "note_on"]
            assert [(m.program, m.channel) for m in programs] == [
                (instrument.program, 9 if part == "drums" else programs[0].channel)
            ]
            assert notes and {m.channel for m in notes} == {programs[0].channel}
            ticks = np.cumsum([m.time for m in track])
            starts = [t for t, m in zip(ticks, track, strict=True) if m.type == "note_on"]
            assert max(starts) < loop_ticks  # every note starts inside the loop


def test_stingers_are_moved_into_each_states_key(pool):
    out, manifest = pool
    graph = load_graph(manifest["graph"])
    for clip in (c for c in manifest["clips"] if c["kind"] == "stinger"):
        state = graph.states[clip["state"]]
        shift = {"calm": 2, "fight": -2}[clip["state"]]  # C → D up, C → Bb down
        assert clip["transpose_semitones"] == shift
        track = mido.MidiFile(str(out / clip["midi"])).tracks[1]
        assert [m.program for m in track if m.type == "program_change"] == [55]  # orchestra hit
        pitches = sorted(m.note for m in track if m.type == "note_on")
        assert pitches == [p + shift for p in HIT_PITCHES]
        assert (clip["gain_db"], clip["cooldown_seconds"], clip["quantize"]) == (-3.0, 2.0, "beat")
        # A one-shot of whole bars at the state's tempo, sounding from its first frame.
        bar_frames = state.meter.beats_per_bar * 60 / state.tempo_bpm * 48000
        assert clip["frames"] == round(clip["bars"] * bar_frames) and clip["bars"] >= 1
        audio, _ = soundfile.read(str(out / clip["wav"]))
        assert np.abs(audio[:4800]).max() > 0.05


def test_export_holds_the_clips_the_daemon_plays_for_a_seed(graph_path, workshop, tmp_path):
    """Loop n of a state in the export is the n-th loop the daemon's pool makes for it, and
    each stinger is the clip the conductor plays in that state."""
    graph = load_graph(graph_path)
    manifest = export.export_pool(graph, tmp_path, workshop, per_state=2, seed=11,
                                  progress=False)  # fmt: skip
    daemon_pool = LoopPool(InlineMaker(workshop), depth=2, seed=11)
    daemon_pool.set_graph(graph)
    for state in graph.states:
        for number in range(2):
            played = daemon_pool.take(state)
            clip = next(c for c in manifest["clips"] if c.get("id") == f"{state}-{number}")
            assert played.loop.loop_id == clip["id"]
            audio, _ = soundfile.read(str(tmp_path / clip["wav"]), dtype="float32")
            assert audio.shape == played.mix.shape
            assert np.abs(audio - played.mix).max() <= RENDER_REPEATS
    # Stingers: what the conductor has rendered for each state, as it plays them.
    conductor = Conductor(graph, LoopPool(InlineMaker(workshop), depth=1, seed=11),
                          Mixer(max_block_frames=256))  # fmt: skip
    conductor.start()
    for state in graph.states:
        held = conductor.pool.extra(("stinger", "hit", state))
        clip = next(c for c in manifest["clips"] if c.get("id") == f"stinger-hit-{state}")
        audio, _ = soundfile.read(str(tmp_path / clip["wav"]), dtype="float32")
        assert audio.shape == held.mix.shape
        assert np.abs(audio - held.mix).max() <= RENDER_REPEATS


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--per-state", "0"], "--per-state must be at least 1, got 0"),
        (["--graph", "missing.yaml"], "missing.yaml:1:1: cannot read"),
        (["--soundfont", "nowhere.sf2"], "the given SoundFont nowhere.sf2 does not exist"),
    ],
)
def test_user_mistakes_are_one_line_errors(argv, message, graph_path, tmp_path, caplog):
    defaults = {"--graph": str(graph_path), "--per-state": "1", "--out": str(tmp_path / "o")}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        defaults[flag] = value
    with caplog.at_level(logging.ERROR, logger="segue.export"):
        code = cli(*[x for pair in defaults.items() for x in pair], "--no-model")
    assert code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0]
    assert not (tmp_path / "o").exists()
