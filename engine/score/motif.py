"""A designer's seed motif: a short MIDI file read with mido, moved into a state's key.

A motif is written in C (major or minor) unless the file carries a key signature;
Segue transposes it to the state's tonic by the smallest interval.
"""

from __future__ import annotations

from pathlib import Path

import mido

from engine.score.music import PITCH_NAMES, Note, transposition

MAX_MOTIF_BEATS = 16.0


class MotifError(ValueError):
    pass


def read_motif(path: Path, tonic: int) -> tuple[Note, ...]:
    """The motif's notes (part "lead", beats from its first bar), in the key of `tonic`."""
    try:
        midi = mido.MidiFile(str(path))
    except FileNotFoundError:
        raise MotifError("file not found") from None
    except (OSError, ValueError, EOFError) as exc:
        raise MotifError(f"not a readable MIDI file ({exc})") from None
    source_tonic = 0
    notes: list[Note] = []
    open_notes: dict[tuple[int, int], tuple[int, int]] = {}
    for track in midi.tracks:
        ticks = 0
        for msg in track:
            ticks += msg.time
            if msg.type == "key_signature":
                name = msg.key.rstrip("m")
                if name in PITCH_NAMES:
                    source_tonic = PITCH_NAMES.index(name)
                elif name in ("Db", "D#", "Gb", "G#", "A#", "Cb"):
                    source_tonic = {"Db": 1, "D#": 3, "Gb": 6, "G#": 8, "A#": 10, "Cb": 11}[name]
            elif msg.type == "note_on" and msg.velocity > 0 and msg.channel != 9:
                open_notes[(msg.channel, msg.note)] = (ticks, msg.velocity)
            elif msg.type in ("note_off", "note_on") and (msg.channel, msg.note) in open_notes:
                start, velocity = open_notes.pop((msg.channel, msg.note))
                beat = midi.ticks_per_beat
                notes.append(
                    Note("lead", msg.note, start / beat, max(ticks - start, 1) / beat, velocity)
                )
    if not notes:
        raise MotifError("it has no notes")
    notes.sort(key=lambda n: (n.start_beats, n.pitch))
    first_bar = int(notes[0].start_beats // 4) * 4
    shift = transposition(tonic, source_tonic)
    moved = tuple(
        Note("lead", n.pitch + shift, n.start_beats - first_bar, n.duration_beats, n.velocity)
        for n in notes
        if n.start_beats - first_bar < MAX_MOTIF_BEATS
    )
    return moved


def top_line(
    notes: tuple[Note, ...] | list[Note], part: str | None = None, from_beats: float = 0.0
) -> list[int]:
    """The melody of `part` (None: of all the notes): its highest pitch at each onset from
    `from_beats` on."""
    top: dict[float, int] = {}
    for n in notes:
        if (part is None or n.part == part) and n.start_beats >= from_beats:
            top[n.start_beats] = max(top.get(n.start_beats, 0), n.pitch)
    return [top[t] for t in sorted(top)]


def material(motif: tuple[Note, ...] | list[Note]) -> tuple[set[int], set[int]]:
    """What a development keeps of a motif: the pitch classes of its melody, and its melodic
    intervals with their inversions (semitones, signed)."""
    line = top_line(motif)
    steps = {b - a for a, b in zip(line, line[1:], strict=False) if b != a}
    return {p % 12 for p in line}, steps | {-i for i in steps}


def development(
    motif: tuple[Note, ...] | list[Note], notes: tuple[Note, ...] | list[Note], part: str = "lead"
) -> tuple[float, float] | None:
    """How much of the motif's material `part` keeps after stating it, as two shares of its
    melody after the motif's last onset: notes in the motif's pitch classes, and melodic
    steps that are one of the motif's intervals or their inversions. None when that melody
    has fewer than three notes or never moves."""
    classes, steps = material(motif)
    later = top_line(notes, part, max(n.start_beats for n in motif) + 1e-6)
    moves = [b - a for a, b in zip(later, later[1:], strict=False) if b != a]
    if len(later) < 3 or not moves:
        return None
    in_classes = sum(p % 12 in classes for p in later) / len(later)
    return in_classes, sum(m in steps for m in moves) / len(moves)
