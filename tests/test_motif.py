"""engine.score.motif's measures of a melody: its top line, and how much of a motif it keeps."""

from __future__ import annotations

import pytest

from engine.score.motif import development, top_line
from engine.score.music import Note


def lead(*pitches_at: tuple[int, float]) -> list[Note]:
    return [Note("lead", p, t, 0.5, 90) for p, t in pitches_at]


MOTIF = lead((57, 0), (60, 1), (64, 1.5), (62, 2))  # A C E D: steps +3 +4 -2; A C D E


def test_top_line_takes_the_highest_note_of_each_onset_in_time_order() -> None:
    notes = [*lead((60, 1), (67, 0), (64, 0)), Note("pad", 72, 0.5, 1, 80)]
    assert top_line(notes, "lead") == [67, 60]
    assert top_line(notes, "lead", from_beats=0.5) == [60]


@pytest.mark.parametrize(
    ("after", "kept"),
    [
        (lead((69, 4), (72, 5), (76, 6), (74, 7)), (1.0, 1.0)),  # the motif an octave up
        (lead((64, 4), (61, 5), (54, 6)), (1 / 3, 1 / 2)),  # -3 (an inversion), then -7
        (lead((65, 4), (66, 5), (67, 6)), (0.0, 0.0)),  # chromatic steps, other pitch classes
        (lead((69, 4), (69, 5)), None),  # too short to say
        (lead((69, 4), (69, 5), (69, 6)), None),  # never moves
    ],
)
def test_development_shares(after: list[Note], kept: tuple[float, float] | None) -> None:
    """Pitch-class share, then interval share, of the melody after the motif's last onset."""
    result = development(MOTIF, [*MOTIF, *after])
    assert result == (pytest.approx(kept) if kept else None)
