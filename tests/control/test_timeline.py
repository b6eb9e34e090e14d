"""The live daemon's timeline keeps its latest entries and drops old ones a few at a time."""

from __future__ import annotations

from engine.control.timeline import TRIM_BATCH, Timeline


def test_the_timeline_keeps_the_latest_and_never_frees_many_entries_at_once():
    """Freeing entries holds the GIL the audio thread needs: a trim frees at most a batch."""
    timeline = Timeline(48000, keep=10_000)
    largest_drop, before = 0, 0
    for i in range(25_000):
        timeline.add("param", {"param": "intensity", "value": i}, frame=i)
        after = len(timeline.entries)
        largest_drop = max(largest_drop, before + 1 - after)
        before = after
    assert 0 < largest_drop <= TRIM_BATCH
    assert 10_000 <= len(timeline.entries) <= 10_000 + TRIM_BATCH
    assert timeline.entries[-1].data["value"] == 24_999
    values = [e.data["value"] for e in timeline.entries]
    assert values == list(range(values[0], 25_000))  # the latest, in order
