"""The listener's measures (engine/train/listening.py) on excerpts whose answers are known."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.score.music import Meter, Note
from engine.train.listening import Excerpt, key_as_heard, listener_beat, measures, summary


def notes(part, *events):
    """(pitch, start, duration) triples, velocity 80."""
    return [Note(part, p, s, d, 80) for p, s, d in events]


def triads(root_pitches, part="pad", length=4.0):
    out = []
    for bar, chord in enumerate(root_pitches):
        out += notes(part, *[(p, bar * length, length) for p in chord])
    return out


C_MAJOR = [(60, 64, 67), (65, 69, 72), (67, 71, 74), (60, 64, 67)]  # I IV V I
A_MINOR = [(57, 60, 64), (62, 65, 69), (64, 68, 71), (57, 60, 64)]  # i iv V i (G#)
C_MINOR = [(60, 63, 67), (65, 68, 72), (67, 71, 74), (60, 63, 67)]  # i iv V i


@pytest.mark.parametrize(
    ("chords", "bass", "key"),
    [
        (C_MAJOR, [36, 41, 43, 36], (0, "major")),
        (A_MINOR, [45, 50, 52, 45], (9, "minor")),
        (C_MINOR, [36, 41, 43, 36], (0, "minor")),
        # The same C-minor chords over a bass that sits on E flat: heard as E flat major.
        (C_MINOR, [39, 39, 39, 39], (3, "major")),
    ],
)
def test_key_as_heard(chords, bass, key):
    music = triads(chords) + notes("bass", *[(p, 4.0 * i, 4.0) for i, p in enumerate(bass)])
    assert key_as_heard(music) == key


@pytest.mark.parametrize(
    ("meter", "beat"),
    [
        (Meter(4, 4), 1.0),
        (Meter(3, 4), 1.0),
        (Meter(6, 8), 1.5),
        (Meter(7, 8), 0.5),
        (Meter(2, 2), 2.0),
    ],
)
def test_the_beat_a_listener_taps(meter, beat):
    assert listener_beat(meter) == beat


def excerpt(music, requested=(0, "major"), bars=4):
    return Excerpt(tuple(music), 4.0, 1.0, bars, requested, "medium")


def test_empty_beats_and_notes_per_bar():
    kick_on_one = notes("drums", *[(36, 4.0 * bar, 0.25) for bar in range(4)])
    m = measures(excerpt(triads(C_MAJOR) + kick_on_one))
    assert m["empty_beats"] == pytest.approx(0.75)  # beats 2, 3 and 4 of every bar
    assert m["notes_per_bar"] == pytest.approx(4.0)  # a triad and a kick per bar
    assert m["key_heard"] == 1.0 and m["mode_heard"] == 1.0


def test_pad_chords_polyphony_entropy_and_scale():
    # The pad plays a dyad for the first half of each bar, then one note.
    pad = []
    for bar in range(4):
        pad += notes("pad", (60, 4.0 * bar, 4.0), (64, 4.0 * bar, 2.0))
    m = measures(excerpt(pad))
    assert m["pad_chords"] == pytest.approx(0.5)
    assert m["polyphony"] == pytest.approx(2.0)
    assert m["pc_entropy"] == pytest.approx(1.0)  # C and E, equally often
    assert m["scale_consistency"] == pytest.approx(1.0)
    chromatic = notes("lead", *[(60 + i, i * 0.5, 0.5) for i in range(12)])
    m = measures(excerpt(chromatic, bars=2))
    assert m["pc_entropy"] == pytest.approx(3.585, abs=1e-3)  # log2(12)
    assert m["scale_consistency"] == pytest.approx(7 / 12)
    assert m["pad_chords"] is None


def test_each_part_s_notes_per_bar_and_register():
    bass = notes("bass", *[(36 + 7 * (i % 2), 2.0 * i, 2.0) for i in range(8)])  # C2, G2
    lead = notes("lead", (72, 0.0, 4.0), (76, 4.0, 4.0), (79, 8.0, 8.0))
    m = measures(excerpt(triads(C_MAJOR) + bass + lead))
    assert m["parts"]["bass"] == {"notes_per_bar": 2.0, "register": 39.5}
    assert m["parts"]["lead"] == {"notes_per_bar": 0.75, "register": 76.0}
    assert m["parts"]["pad"]["notes_per_bar"] == 3.0
    assert "drums" not in m["parts"]  # a part that does not play is not counted as silent
    rows = [m, measures(excerpt(lead))]
    assert summary(rows, ["medium", "medium"])["parts"]["lead"]["notes_per_bar"] == 0.75
    assert summary(rows, ["medium", "medium"])["parts"]["bass"]["notes_per_bar"] == 2.0


def test_a_note_past_the_loop_end_sounds_from_its_start():
    # A pad note held from the last beat across the loop's end meets the first bar's note.
    held = notes("pad", (67, 15.0, 2.0), (60, 0.5, 1.0))
    m = measures(excerpt(held))
    # Sounding: 67 over 15-16 and, wrapped, 0-1; 60 over 0.5-1.5. Together over 0.5-1.
    assert m["pad_chords"] == pytest.approx(0.5 / 2.5)
    # A real excerpt is cut at its end instead: the two never meet.
    cut = Excerpt(tuple(held), 4.0, 1.0, 4, None, None, wraps=False)
    assert measures(cut)["pad_chords"] == 0.0


def test_a_missing_model_is_one_line_not_a_traceback(tmp_path) -> None:
    missing = tmp_path / "none.onnx"
    out = subprocess.run(
        [sys.executable, "-m", "engine.train", "listen", "--model", str(missing), "--out",
         str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"python -m engine.train: model file not found: {missing}"
    ]


def test_repetition_reads_a_held_groove_as_one_and_a_fresh_one_as_low():
    from engine.train.listening import repetition

    def bars(*patterns):
        """One drum pattern per bar, each as (key, start in the bar, duration) triples."""
        return [n for bar, pattern in enumerate(patterns)
                for n in notes("drums", *[(p, bar * 4 + s, d) for p, s, d in pattern])]  # fmt: skip

    beat = [(36, 0.0, 0.25), (42, 0.5, 0.25), (38, 1.0, 0.25), (42, 1.5, 0.25)]
    other = [(36, 0.0, 0.25), (36, 2.5, 0.25), (38, 3.0, 0.25)]
    held = bars(beat, beat, beat, beat)
    assert repetition(held, 4.0, 4, by_pitch=True) == 1.0
    # A two-bar pattern (A B A B): bars 3 and 4 repeat the bar two before them; bar 2 shares
    # one onset of six with bar 1.
    ab = repetition(bars(beat, other, beat, other), 4.0, 4, by_pitch=True)
    assert ab == pytest.approx((1 / 6 + 1 + 1) / 3)
    # Each bar on onsets of its own: nothing shared.
    fresh = bars([(36, 0.0, 0.25)], [(38, 0.25, 0.25)], [(42, 0.5, 0.25)], [(36, 0.75, 0.25)])
    assert repetition(fresh, 4.0, 4, by_pitch=True) == 0.0
    # The same rhythm on other drums: the groove's keys differ, the rhythm is the same.
    swapped = bars(*[[(p + bar, s, d) for p, s, d in beat] for bar in range(4)])
    assert repetition(swapped, 4.0, 4, by_pitch=True) == 0.0
    assert repetition(swapped, 4.0, 4, by_pitch=False) == 1.0
    assert repetition([], 4.0, 4, by_pitch=True) is None
    assert repetition(held, 4.0, 1, by_pitch=True) is None
    # Drums that drop out: the silent bars are not scored, and the bar after them repeats the
    # one two before only if it has one (bar 4 after a silent bar 3 still matches bar 2).
    assert repetition(bars(beat, beat, [], beat), 4.0, 4, by_pitch=True) == 1.0
    assert repetition(bars(beat, [], [], beat), 4.0, 4, by_pitch=True) == 0.0
    # An onset a little before the bar line (unquantised) counts on the next bar's downbeat.
    early = bars(beat, beat) + notes("drums", (36, 7.99, 0.25))
    assert repetition(early, 4.0, 3, by_pitch=True) == pytest.approx((1.0 + 1 / 4) / 2)
