"""The training data: sources → pieces → 4-bar windows → control-labelled token sequences.

Sources (each recorded with its size and licence in data/dataset.json):
- the music21 package's bundled corpus: Bach chorales, Ryan's Mammoth Collection,
  O'Neill's 1850, and its multi-part works whose encodings reserve no rights
  (`classical_chamber`: string quartets and others, see CHAMBER_FOLDERS);
- the MIDI lumps `D_*` of Freedoom's WADs (Debian package `freedoom`);
- any folder of `.mid` files a user passes (a studio fine-tuning on its own music);
- loops the shipped decoding writes (engine.train.teacher: distillation of the priors).

Parts: MIDI channel 10 is drums; of the melodic voices (channels, or score parts) the
lowest by mean pitch is bass, the highest is lead, the rest are pad; a lone voice is lead.
Pieces are split train/validation/test by a hash of the piece's id, never by window.
Pitches are written relative to each window's tonic (see engine.making.tokens), which makes
transposition augmentation an identity; pieces without a tempo marking get a tempo drawn
per window from a range typical of their repertoire (tempo augmentation where the tempo is
unknown anyway).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import mido
import numpy as np
from tqdm import tqdm

from engine.making.grammar import with_chords
from engine.making.tokens import (
    METERS,
    PREFIX_LEN,
    Controls,
    encode,
    tempo_bucket,
)
from engine.score.music import PARTS, Note
from engine.train import controls as ctl
from engine.train.sources import LEFT_OUT, SOURCES, TEACHER_SOURCE, corpus_files
from engine.train.wad import midi_lumps

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = REPO / "data"
WINDOW_BARS = 4
STRIDE_BARS = 2
MAX_TOKENS = 1024  # longer windows are truncated (the model learns their beginnings)
# Density buckets, distinct onsets per beat across parts: below 1.5 mostly quarters and
# longer, 1.5-3 eighth-note motion, 3 and up sixteenths. (Data terciles fall at 1.8/2.0, right
# on the straight-eighths mode of the fiddle tunes, which would make "medium" a knife edge.)
DENSITY_EDGES = (1.5, 3.0)
FREEDOOM_WADS = ("/usr/share/games/doom/freedoom1.wad", "/usr/share/games/doom/freedoom2.wad")
# Tempo ranges (bpm) for pieces with no tempo marking: a window draws one uniformly.
UNMARKED_TEMPO_BPM = {"bach_chorales": (60.0, 100.0), "default": (84.0, 150.0)}


@dataclass
class Piece:
    """One piece of music with its notes in beats and its bar lines."""

    piece_id: str
    source: str
    notes: list[Note]
    bars: list[tuple[float, str]]  # (start beats, meter) of each full bar
    tempo_bpm: float | None  # None: no tempo marking
    bar_beats: dict[str, float] = field(default_factory=dict)


def split_of(piece_id: str) -> str:
    bucket = int(hashlib.sha1(piece_id.encode()).hexdigest()[:8], 16) % 100
    return "train" if bucket < 80 else "val" if bucket < 90 else "test"


def assign_parts(voices: list[list[tuple[int, float, float, int]]]) -> list[str]:
    """Part names for melodic voices (lists of (pitch, start, dur, vel)) by mean pitch."""
    means = [np.mean([n[0] for n in v]) if v else 0.0 for v in voices]
    order = sorted((i for i, v in enumerate(voices) if v), key=lambda i: means[i])
    parts = ["pad"] * len(voices)
    if len(order) == 1:
        parts[order[0]] = "lead"
    elif order:
        parts[order[0]], parts[order[-1]] = "bass", "lead"
    return parts


def _meter_beats(meter: str) -> float:
    beats, unit = (int(x) for x in meter.split("/"))
    return beats * 4 / unit


# -- readers ----------------------------------------------------------------------------
def read_midi(data: bytes | str | Path, piece_id: str, source: str) -> Piece | None:
    """A standard MIDI file as a Piece (first meter and tempo; bars from tick 0)."""
    if isinstance(data, bytes):
        import io

        midi = mido.MidiFile(file=io.BytesIO(data))
    else:
        midi = mido.MidiFile(str(data))
    tpb = midi.ticks_per_beat
    meter, tempo_bpm = None, None
    open_notes: dict[tuple[int, int], tuple[int, int]] = {}
    by_channel: dict[int, list[tuple[int, float, float, int]]] = {}
    for track in midi.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "time_signature" and meter is None:
                meter = f"{msg.numerator}/{msg.denominator}"
            elif msg.type == "set_tempo" and tempo_bpm is None:
                tempo_bpm = mido.tempo2bpm(msg.tempo)
            elif msg.type == "note_on" and msg.velocity > 0:
                open_notes[(msg.channel, msg.note)] = (tick, msg.velocity)
            elif msg.type in ("note_off", "note_on"):
                started = open_notes.pop((msg.channel, msg.note), None)
                if started is not None:
                    start, vel = started
                    by_channel.setdefault(msg.channel, []).append(
                        (msg.note, start / tpb, max(tick - start, 1) / tpb, vel)
                    )
    meter = meter or "4/4"
    if meter not in METERS or not by_channel:
        return None
    drums = by_channel.pop(9, [])
    channels = sorted(by_channel)
    names = assign_parts([by_channel[c] for c in channels])
    notes = [Note("drums", p, s, d, v) for p, s, d, v in drums]
    for channel, part in zip(channels, names, strict=True):
        notes += [Note(part, p, s, d, v) for p, s, d, v in by_channel[channel]]
    end = max(n.start_beats for n in notes)
    bar_len = _meter_beats(meter)
    bars = [(i * bar_len, meter) for i in range(int(end // bar_len) + 1)]
    return Piece(piece_id, source, notes, bars, tempo_bpm)


def read_score(score, piece_id: str, source: str) -> Piece | None:
    """A music21 Score as a Piece: parts → voices, full measures → bars."""
    from music21 import stream, tempo

    score = score.stripTies(inPlace=False)
    parts = list(score.parts) or [score]
    voices: list[list[tuple[int, float, float, int]]] = []
    for part in parts:
        voice = []
        for element in part.flatten().notes:
            if element.duration.quarterLength <= 0:
                continue  # grace notes
            vel = element.volume.velocity or 80
            for pitch in element.pitches:
                voice.append(
                    (pitch.midi, float(element.offset), float(element.duration.quarterLength), vel)
                )
        voices.append(voice)
    names = assign_parts(voices)
    notes = [
        Note(n, p, s, d, v) for n, voice in zip(names, voices, strict=True) for p, s, d, v in voice
    ]
    if not notes:
        return None
    bars = []
    for measure in parts[0].getElementsByClass(stream.Measure):
        ts = measure.timeSignature or measure.getContextByClass("TimeSignature")
        if ts is None:
            continue
        meter = f"{ts.numerator}/{ts.denominator}"
        full = abs(measure.duration.quarterLength - ts.barDuration.quarterLength) < 1e-6
        if meter in METERS and full:
            bars.append((float(measure.offset), meter))
    marks = list(score.recurse().getElementsByClass(tempo.MetronomeMark))
    tempo_bpm = None
    if marks and marks[0].number:
        tempo_bpm = float(marks[0].getQuarterBPM() or marks[0].number)
    return Piece(piece_id, source, notes, bars, tempo_bpm)


def _parse_corpus_file(args: tuple[str, str, str]) -> list[Piece]:
    path, source, name = args
    from music21 import converter, stream

    try:
        parsed = converter.parse(path)
    except Exception:  # a malformed encoding: skip the file, count it
        return []
    scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    pieces = []
    for i, score in enumerate(scores):
        try:
            piece = read_score(score, f"{source}/{name}#{i}", source)
        except Exception:
            piece = None
        if piece is not None and piece.bars:
            pieces.append(piece)
    return pieces


def read_pieces(
    midi_dirs: list[Path], workers: int = 2, builtin_sources: bool = True
) -> Iterator[Piece]:
    files = corpus_files() if builtin_sources else []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_parse_corpus_file, files, chunksize=4)
        for pieces in tqdm(results, total=len(files), desc="music21 corpus", unit="file"):
            yield from pieces
    seen: set[str] = set()
    for wad in FREEDOOM_WADS if builtin_sources else ():
        for name, body in midi_lumps(wad).items():
            digest = hashlib.sha1(body).hexdigest()
            if digest in seen:
                continue  # the two WADs share some tracks
            seen.add(digest)
            piece = read_midi(body, f"freedoom/{Path(wad).stem}/{name}", "freedoom")
            if piece is not None:
                yield piece
    for folder in midi_dirs:
        files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".mid", ".midi"))
        for path in tqdm(files, desc=f"MIDI {folder}", unit="file"):
            try:
                piece = read_midi(path, f"user/{path.relative_to(folder)}", f"user:{folder}")
            except (OSError, ValueError, EOFError):
                continue
            if piece is not None:
                yield piece


# -- windows ----------------------------------------------------------------------------
@dataclass
class Window:
    piece_id: str
    source: str
    split: str
    notes: list[Note]
    meter: str
    tonic: int
    mode: str
    tempo_bpm: float
    density: float
    mean_pitch: float | None
    parts: tuple[str, ...]


def windows_of(piece: Piece, rng: np.random.Generator) -> Iterator[Window]:
    starts = sorted(piece.bars)
    notes = sorted(piece.notes, key=lambda n: n.start_beats)
    onsets = np.array([n.start_beats for n in notes])
    split = split_of(piece.piece_id)
    for i in range(0, len(starts) - WINDOW_BARS + 1, STRIDE_BARS):
        group = starts[i : i + WINDOW_BARS]
        meter = group[0][1]
        bar_len = _meter_beats(meter)
        contiguous = all(
            m == meter and abs(b - (group[0][0] + k * bar_len)) < 1e-6
            for k, (b, m) in enumerate(group)
        )
        if not contiguous:
            continue
        t0 = group[0][0]
        lo, hi = np.searchsorted(onsets, [t0 - 1e-6, t0 + WINDOW_BARS * bar_len - 1e-6])
        window = [
            Note(n.part, n.pitch, n.start_beats - t0, n.duration_beats, n.velocity)
            for n in notes[lo:hi]
        ]
        if not window:
            continue
        # Heard with the bass counted twice, 4.5 % of the windows change key from the finding
        # without it: 14 % of the chamber music's, 11 % of Freedoom's, 7 % of the chorales'.
        key = ctl.find_key(window)
        tonic, mode = key if key is not None else (0, "major")
        if piece.tempo_bpm is not None:
            tempo_bpm = piece.tempo_bpm
        else:
            low, high = UNMARKED_TEMPO_BPM.get(piece.source, UNMARKED_TEMPO_BPM["default"])
            tempo_bpm = float(rng.uniform(low, high))
        parts = tuple(p for p in PARTS if any(n.part == p for n in window))
        yield Window(
            piece.piece_id,
            piece.source,
            split,
            window,
            meter,
            tonic,
            mode,
            tempo_bpm,
            ctl.onset_density(window, WINDOW_BARS * bar_len),
            ctl.mean_melodic_pitch(window),
            parts,
        )


def controls_for(window: Window, density_edges: tuple[float, float], median: float) -> Controls:
    return Controls(
        quadrant=ctl.quadrant(
            window.mode, window.mean_pitch, window.tempo_bpm, window.density, median
        ),
        mode=window.mode,
        tempo=tempo_bucket(window.tempo_bpm),
        density=ctl.density_bucket(window.density, density_edges),
        meter=window.meter,
        parts=window.parts,
    )


def content_key(piece: Piece) -> tuple:
    """The first notes of a piece, as (pitch, 16th step): equal for a duplicated tune."""
    notes = sorted(piece.notes, key=lambda n: (n.start_beats, n.pitch))[:64]
    return tuple((n.pitch, round(n.start_beats * 4)) for n in notes)


def build(
    midi_dirs: list[Path],
    out_dir: Path = DATA_DIR,
    workers: int = 2,
    builtin_sources: bool = True,
    teacher=None,
) -> dict:
    """Read every source, label and tokenize its windows, and cache them under out_dir.

    builtin_sources=False reads only the given MIDI folders (a studio's own data, or tests);
    a `teacher` (engine.train.teacher.Teacher) adds the loops of a model's decoding.
    """
    teacher_sha = teacher.sha256() if teacher is not None else None  # a missing model: now
    rng = np.random.default_rng(1234)
    windows: list[Window] = []
    pieces_per_source: dict[str, int] = {}
    seen: set[tuple] = set()
    duplicates = 0
    pieces = read_pieces(midi_dirs, workers=workers, builtin_sources=builtin_sources)
    if teacher is not None:
        pieces = itertools.chain(pieces, teacher.pieces())
    for piece in pieces:
        content = content_key(piece)
        if content in seen:  # O'Neill's files overlap; a tune counts once
            duplicates += 1
            continue
        seen.add(content)
        pieces_per_source[piece.source] = pieces_per_source.get(piece.source, 0) + 1
        windows.extend(windows_of(piece, rng))
    train = [w for w in windows if w.split == "train"]  # the median is real music's
    train_density = np.array([w.density for w in train if w.source != TEACHER_SOURCE] or
                             [w.density for w in train])  # fmt: skip
    edges = DENSITY_EDGES
    median = float(np.median(train_density))
    sequences, meta = [], []
    for w in tqdm(windows, desc="tokenize", unit="window"):
        controls = controls_for(w, edges, median)
        tokens = encode(w.notes, controls, WINDOW_BARS, w.tonic)[:MAX_TOKENS]
        sequences.append(np.asarray(tokens, dtype=np.int16))
        meta.append((w.piece_id, w.source, w.split, w.tonic, w.tempo_bpm))
    out_dir.mkdir(parents=True, exist_ok=True)
    offsets = np.cumsum([0] + [len(s) for s in sequences])
    np.savez_compressed(
        out_dir / "dataset.npz",
        tokens=np.concatenate(sequences),
        offsets=offsets,
        split=np.array([m[2] for m in meta]),
        source=np.array([m[1] for m in meta]),
        piece=np.array([m[0] for m in meta]),
        tempo_bpm=np.array([m[4] for m in meta]),
    )
    about = {**SOURCES, TEACHER_SOURCE: teacher.about} if teacher is not None else SOURCES
    summary = {
        "window_bars": WINDOW_BARS,
        "stride_bars": STRIDE_BARS,
        "density_edges": edges,
        "duplicate_pieces_skipped": duplicates,
        "left_out": LEFT_OUT if builtin_sources else "",
        "teacher_sha256": teacher_sha,
        "median_density": median,
        "sources": {
            name: {
                **about.get(
                    name, {"what": name, "licence": "supplied by the user (their own MIDI)"}
                ),
                "pieces": pieces_per_source.get(name, 0),
                "windows": sum(1 for m in meta if m[1] == name),
                "tokens": int(
                    sum(len(s) for s, m in zip(sequences, meta, strict=True) if m[1] == name)
                ),
            }
            for name in sorted(
                (set(SOURCES) if builtin_sources else set()) | set(pieces_per_source)
            )
        },
        "splits": {
            split: {
                "pieces": len({m[0] for m in meta if m[2] == split}),
                "windows": sum(1 for m in meta if m[2] == split),
            }
            for split in ("train", "val", "test")
        },
    }
    (out_dir / "dataset.json").write_text(json.dumps(summary, indent=2))
    return summary


@dataclass(frozen=True)
class Dataset:
    """The cached token sequences (see `build`)."""

    tokens: np.ndarray
    offsets: np.ndarray
    split: np.ndarray
    source: np.ndarray
    summary: dict

    @classmethod
    def load(cls, data_dir: Path = DATA_DIR) -> Dataset:
        path = data_dir / "dataset.npz"
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: run `python -m engine.train data` first")
        z = np.load(path)
        summary = json.loads((data_dir / "dataset.json").read_text())
        tokens, offsets, split = z["tokens"], z["offsets"], z["split"].astype("U5")
        # Each bar's chord, found from its notes (engine.making.grammar.with_chords): derived
        # here, so the cache holds only the music and the harmony finding can change alone.
        sequences = [with_chords(tokens[offsets[i] : offsets[i + 1]]) for i in range(len(split))]
        offsets = np.cumsum([0] + [len(s) for s in sequences])
        tokens = np.concatenate([np.asarray(s, dtype=np.int16) for s in sequences])
        # Some tunes appear twice in the corpus (O'Neill's files overlap, Ryan's shares tunes):
        # a held-out window whose music is also a training window is left out of val/test.
        bodies = [
            tokens[offsets[i] + PREFIX_LEN : offsets[i + 1]].tobytes() for i in range(len(split))
        ]
        seen = {b for b, s in zip(bodies, split, strict=True) if s == "train"}
        duplicate = np.array(
            [s != "train" and b in seen for b, s in zip(bodies, split, strict=True)]
        )
        split = np.where(duplicate, "dup", split)
        summary["held_out_duplicates_dropped"] = int(duplicate.sum())
        return cls(tokens, offsets, split, z["source"], summary)

    def sequences(self, split: str) -> list[np.ndarray]:
        return [
            self.tokens[self.offsets[i] : self.offsets[i + 1]].astype(np.int64)
            for i in np.flatnonzero(self.split == split)
        ]

    def sources_of(self, split: str) -> np.ndarray:
        return self.source[self.split == split]
