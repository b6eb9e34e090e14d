"""Controls measured from the music itself, so no piece needs a hand label.

The same functions label the training windows and measure generated loops in evaluation:

- key: Krumhansl–Kessler key finding on the duration-weighted pitch-class histogram of the
  melodic parts (drums excluded), the bass counted twice as a listener hears it → tonic and
  mode. The bass names the harmony: a window whose tune sits on the tonic over a bass on the
  subdominant is heard in the subdominant, and its tokens are written relative to that.
  `mode_given_tonic` decides major/minor when the tonic is already known (a generated loop
  is written in its state's key).
- density: distinct onset times per beat across all parts (the rhythmic busyness of the
  texture; on the 16th grid at most 4) → low below 1.5, medium below 3, high from 3
  (thresholds in engine.train.data.DENSITY_EDGES, stored in the manifest).
- arousal: +1 when log2(tempo / 112 bpm) + log2(density / median density) > 0, else -1
  (fast or busy music is energetic).
- valence: +1 when (+1 for major, -1 for minor) + (mean melodic pitch − 64) / 12 >= 0, else -1
  (major is pleasant; a very low register darkens a major piece, a very high one lightens a
  minor one).
- mood quadrant: engine.score.music.QUADRANTS[(valence, arousal)].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.score.music import MAJOR_SCALE, MINOR_SCALE, QUADRANTS, Note

# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
AROUSAL_TEMPO_BPM = 112.0
VALENCE_PITCH_CENTRE = 64.0


def pitch_class_histogram(notes: Sequence[Note], weighted: bool = True) -> np.ndarray:
    """Pitch classes of the melodic notes; `weighted`: by duration, the bass's twice."""
    hist = np.zeros(12)
    for note in notes:
        if note.part != "drums":
            weight = note.duration_beats * (2.0 if note.part == "bass" else 1.0)
            hist[note.pitch % 12] += weight if weighted else 1.0
    return hist


def _correlations(hist: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """Pearson correlation of the histogram with the profile rotated to each tonic."""
    rotated = np.stack([np.roll(profile, tonic) for tonic in range(12)])
    h = hist - hist.mean()
    r = rotated - rotated.mean(axis=1, keepdims=True)
    denom = np.sqrt((h * h).sum() * (r * r).sum(axis=1)) + 1e-12
    return (r @ h) / denom


def find_key(notes: Sequence[Note]) -> tuple[int, str] | None:
    """(tonic pitch class, mode) or None when there are no melodic notes."""
    hist = pitch_class_histogram(notes)
    if hist.sum() == 0 or np.count_nonzero(hist) < 2:
        return None
    major, minor = _correlations(hist, MAJOR_PROFILE), _correlations(hist, MINOR_PROFILE)
    if major.max() >= minor.max():
        return int(major.argmax()), "major"
    return int(minor.argmax()), "minor"


def mode_given_tonic(notes: Sequence[Note], tonic: int) -> str | None:
    """Major or minor over a known tonic: the profile that correlates better."""
    hist = pitch_class_histogram(notes)
    if hist.sum() == 0 or np.count_nonzero(hist) < 2:
        return None
    major = _correlations(hist, MAJOR_PROFILE)[tonic % 12]
    minor = _correlations(hist, MINOR_PROFILE)[tonic % 12]
    return "major" if major >= minor else "minor"


def onset_density(notes: Sequence[Note], beats: float) -> float:
    """Distinct onset times (16th grid, any part) per beat."""
    if beats <= 0:
        return 0.0
    return len({round(note.start_beats * 4) for note in notes}) / beats


def density_bucket(density: float, edges: Sequence[float]) -> str:
    low_below, high_from = edges
    return "low" if density < low_below else "medium" if density < high_from else "high"


def mean_melodic_pitch(notes: Sequence[Note]) -> float | None:
    pitches = [n.pitch for n in notes if n.part != "drums"]
    return float(np.mean(pitches)) if pitches else None


def quadrant(
    mode: str, mean_pitch: float | None, tempo_bpm: float, density: float, median_density: float
) -> str:
    """Mood quadrant from mode, register, tempo and density (rule in the module docstring)."""
    arousal_score = np.log2(tempo_bpm / AROUSAL_TEMPO_BPM) + np.log2(
        max(density, 1e-3) / max(median_density, 1e-3)
    )
    arousal = 1 if arousal_score > 0 else -1
    register = 0.0 if mean_pitch is None else (mean_pitch - VALENCE_PITCH_CENTRE) / 12.0
    valence = 1 if (1.0 if mode == "major" else -1.0) + register >= 0 else -1
    return QUADRANTS[(valence, arousal)]


def in_scale_rate(notes: Sequence[Note], tonic: int, mode: str) -> float | None:
    """muspy's pitch_in_scale_rate: share of melodic notes in the key's scale."""
    scale = {(tonic + s) % 12 for s in (MAJOR_SCALE if mode == "major" else MINOR_SCALE)}
    pitches = [n.pitch for n in notes if n.part != "drums"]
    if not pitches:
        return None
    return sum(p % 12 in scale for p in pitches) / len(pitches)


def pitch_class_entropy(notes: Sequence[Note]) -> float | None:
    """muspy's pitch_class_entropy: Shannon entropy (bits) of the pitch-class histogram."""
    hist = pitch_class_histogram(notes, weighted=False)
    if hist.sum() == 0:
        return None
    p = hist / hist.sum()
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def empty_bar_rate(notes: Sequence[Note], bars: int, bar_beats: float) -> float:
    """muspy's empty_measure_rate: share of bars in which no note starts."""
    used = {int(n.start_beats // bar_beats) for n in notes}
    return sum(1 for b in range(bars) if b not in used) / bars
