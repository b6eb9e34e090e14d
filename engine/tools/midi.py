"""A loop as a standard MIDI file, for a DAW: `segue generate` and `segue export` write it."""

from __future__ import annotations

import mido

from engine.making.synth import CHANNELS
from engine.score.music import PITCH_NAMES, Loop

TICKS_PER_BEAT = 480  # per quarter note


def key_signature(tonic: int, mode: str) -> str:
    return PITCH_NAMES[tonic] + ("m" if mode == "minor" else "")


def loop_midi(loop: Loop) -> mido.MidiFile:
    """A type-1 MIDI file: a conductor track (tempo, meter, key), then one track per part on
    the channel the synth renders it on, with its GM program (drums: channel 10, the kit as a
    GS/GM2 program change, which GM1 players ignore)."""
    spec = loop.spec
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("track_name", name=loop.loop_id or spec.state, time=0))
    conductor.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(spec.tempo_bpm), time=0))
    conductor.append(
        mido.MetaMessage(
            "time_signature",
            numerator=spec.meter.beats_per_bar,
            denominator=spec.meter.beat_unit,
            time=0,
        )
    )
    conductor.append(
        mido.MetaMessage("key_signature", key=key_signature(spec.tonic, spec.mode), time=0)
    )
    conductor.append(mido.MetaMessage("end_of_track", time=round(spec.beats * TICKS_PER_BEAT)))
    midi.tracks.append(conductor)
    for index, (part, instrument) in enumerate(spec.instruments):
        channel = CHANNELS.get(part, index)
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=f"{part}: {instrument.name}", time=0))
        track.append(mido.Message("program_change", channel=channel, program=instrument.program))
        events = []
        for note in loop.notes:
            if note.part != part or not 0 <= note.pitch <= 127:
                continue
            on = round(note.start_beats * TICKS_PER_BEAT)
            off = on + max(1, round(note.duration_beats * TICKS_PER_BEAT))
            events.append((on, 1, note.pitch, min(127, max(1, int(note.velocity)))))
            events.append((off, 0, note.pitch, 0))
        now = 0
        for tick, is_on, pitch, velocity in sorted(events):  # offs before ons at one tick
            kind = "note_on" if is_on else "note_off"
            track.append(
                mido.Message(kind, channel=channel, note=pitch, velocity=velocity, time=tick - now)
            )
            now = tick
        track.append(mido.MetaMessage("end_of_track", time=0))
        midi.tracks.append(track)
    return midi
