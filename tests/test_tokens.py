"""Loop tokens: encode/decode round trips and the grammar that constrains sampling."""

from __future__ import annotations

import numpy as np
import pytest

from engine.making.grammar import Grammar, decode, with_chords
from engine.making.tokens import (
    BAR,
    CHORD0,
    DV0,
    EOS,
    INDEX,
    N_CHORD,
    NOTE0,
    PREFIX_LEN,
    VOCAB,
    Controls,
    TokenError,
    bar_steps,
    controls_of,
    duration_index,
    encode,
    prefix_tokens,
    tempo_bucket,
)
from engine.score.music import PARTS, Note

CONTROLS = Controls("tense", "minor", "fast", "high", "4/4", ("drums", "bass", "lead"))


def test_vocabulary_is_unique_and_indexed() -> None:
    assert len(set(VOCAB)) == len(VOCAB)
    assert all(VOCAB[i] == w for w, i in INDEX.items())


@pytest.mark.parametrize(
    ("tempo_bpm", "bucket"),
    [(60, "slow"), (95.9, "slow"), (96, "medium"), (131, "medium"), (132, "fast")],
)
def test_tempo_bucket(tempo_bpm: float, bucket: str) -> None:
    assert tempo_bucket(tempo_bpm) == bucket


@pytest.mark.parametrize(
    ("meter", "steps"),
    [("4/4", 16), ("3/4", 12), ("6/8", 12), ("2/2", 16), ("12/8", 24), ("7/8", 14)],
)
def test_bar_steps(meter: str, steps: int) -> None:
    assert bar_steps(meter) == steps


@pytest.mark.parametrize(
    ("steps", "token_steps"), [(1, 1), (2, 2), (5, 6), (7, 8), (16, 16), (40, 32)]
)
def test_duration_rounds_to_nearest_token(steps: float, token_steps: int) -> None:
    from engine.making.tokens import DURATION_STEPS

    assert DURATION_STEPS[duration_index(steps)] == token_steps


def test_round_trip_keeps_notes_on_the_grid() -> None:
    tonic = 7  # G
    notes = [
        Note("drums", 36, 0.0, 0.25, 100),
        Note("drums", 42, 0.0, 0.25, 70),
        Note("bass", 43, 0.0, 1.0, 90),
        Note("lead", 74, 0.5, 0.5, 96),
        Note("lead", 79, 0.5, 0.5, 96),
        Note("lead", 71, 15.75, 2.0, 50),  # last 16th of bar 4, rings past the end
    ]
    tokens = encode(notes, CONTROLS, bars=4, tonic=tonic)
    assert tokens[:PREFIX_LEN] == prefix_tokens(CONTROLS)
    assert tokens.count(BAR) == 4 and tokens[-1] == EOS
    controls, decoded = decode(tokens, tonic=tonic)
    assert controls == CONTROLS
    key = lambda n: (n.start_beats, n.part, n.pitch)  # noqa: E731
    assert sorted(map(key, decoded)) == sorted(map(key, notes))
    assert [n.duration_beats for n in sorted(decoded, key=key)][-1] == 2.0


@pytest.mark.parametrize(
    ("note", "kept"),
    [
        (Note("pad", 60, 0.0, 1.0, 80), False),  # part not in the controls
        (Note("lead", 60, 16.0, 1.0, 80), False),  # starts after the 4 bars
        (Note("lead", 60, -0.5, 1.0, 80), False),  # starts before
        (Note("drums", 20, 0.0, 1.0, 80), False),  # not a kit key
        (Note("lead", 130 - 12, 0.0, 1.0, 80), True),  # folded down an octave
    ],
)
def test_encode_drops_what_the_loop_cannot_hold(note: Note, kept: bool) -> None:
    _, decoded = decode(encode([note], CONTROLS, bars=4, tonic=0), tonic=0)
    assert bool(decoded) == kept


def test_key_relative_pitches_transpose_with_the_tonic() -> None:
    notes = [Note("lead", 62, 0.0, 1.0, 80)]  # D in C
    tokens_c = encode(notes, CONTROLS, bars=1, tonic=0)
    tokens_d = encode([Note("lead", 64, 0.0, 1.0, 80)], CONTROLS, bars=1, tonic=2)  # E in D
    assert tokens_c == tokens_d


def test_controls_of_reads_the_prefix() -> None:
    assert controls_of(prefix_tokens(CONTROLS)) == CONTROLS
    with pytest.raises(TokenError):
        controls_of([BAR] * PREFIX_LEN)


def words(*names: str) -> list[int]:
    return [INDEX[n] for n in names]


@pytest.mark.parametrize(
    ("sequence", "ok"),
    [
        (words("BAR", "POS_0", "INST_lead", "NOTE_60", "DV_4_1", "BAR", "EOS"), True),
        (words("BAR", "BAR", "EOS"), True),  # empty bars are music too
        (words("BAR", "EOS"), False),  # one bar short
        (words("BAR", "BAR", "BAR"), False),  # one bar too many
        (words("BAR", "POS_16"), False),  # outside a 4/4 bar
        (words("BAR", "POS_4", "POS_2"), False),  # positions go forward
        (words("BAR", "POS_0", "INST_pad"), False),  # pad not requested
        (words("BAR", "POS_0", "INST_lead", "DRUM_36"), False),  # lead plays notes
        (words("BAR", "POS_0", "INST_drums", "NOTE_60"), False),  # drums play kit keys
        (words("BAR", "POS_0", "INST_lead", "NOTE_60", "DV_4_1", "NOTE_59"), False),  # ascending
        (words("BAR", "POS_0", "INST_lead", "NOTE_60", "DV_4_1", "INST_bass"), False),  # part order
        (words("BAR", "POS_0", "INST_lead", "NOTE_60", "NOTE_64"), False),  # each pitch needs a DV
    ],
)
def test_grammar(sequence: list[int], ok: bool) -> None:
    """Each bad sequence is fine up to its last token, which the grammar itself refuses
    (it is not among `choices()`, and `advance` raises)."""
    grammar = Grammar("4/4", 2, ("drums", "bass", "lead"))
    *allowed, last = sequence
    for t in allowed:
        grammar.advance(t)
    assert (last in grammar.choices()) == ok
    if ok:
        grammar.advance(last)
        assert grammar.done
    else:
        with pytest.raises(TokenError, match=f"token {VOCAB[last]} not allowed"):
            grammar.advance(last)
        assert not grammar.done


def test_random_walk_under_the_grammar_always_decodes() -> None:
    rng = np.random.default_rng(0)
    for meter in ("4/4", "3/4", "6/8", "5/4"):
        grammar = Grammar(meter, 3, ("bass", "pad", "lead"))
        tokens = prefix_tokens(
            Controls("calm", "major", "slow", "low", meter, ("bass", "pad", "lead"))
        )
        while not grammar.done:
            choices = grammar.choices()
            assert len(choices) > 0 and np.all(np.diff(choices) > 0)  # ascending, distinct
            t = int(rng.choice(choices))
            grammar.advance(t)
            tokens.append(t)
        _, notes = decode(tokens, tonic=3)
        loop_beats = 3 * bar_steps(meter) / 4
        assert all(0 <= n.start_beats < loop_beats for n in notes)
        assert {n.part for n in notes} <= {"bass", "pad", "lead"}


def _fixed(part: int, *notes: tuple[int, int, int]) -> list:
    return [(step, part, NOTE0 + pitch, DV0 + dv) for step, pitch, dv in notes]


FIXED_CASES = [
    # meter, parts, fixed events (step, part, pitch token, DV), min onsets, budget per 16th
    ("4/4", ("bass", "pad", "lead"), _fixed(3, (0, 57, 9), (6, 60, 5)), 0, None),
    ("4/4", ("lead",), _fixed(3, (0, 57, 0), (0, 61, 0), (9, 64, 0)), 40, 8),
    ("6/8", ("drums", "bass", "pad"), _fixed(2, (3, 50, 2), (20, 52, 0)), 30, 8),
    ("3/4", PARTS, [], 36, 8),
    ("4/4", PARTS, _fixed(1, (1, 40, 7), (30, 43, 7)), 48, 6),
    ("4/4", ("lead",), _fixed(3, (2, 60, 3), (20, 62, 3)), 20, 7),  # rests across a bar line
]  # fmt: skip


@pytest.mark.parametrize(("meter", "parts", "fixed", "min_onsets", "per_step"), FIXED_CASES)
def test_random_walks_keep_the_fixed_notes_the_floor_and_no_empty_bar(
    meter: str, parts: tuple[str, ...], fixed: list, min_onsets: int, per_step: int | None
) -> None:
    """Whatever the sampler picks among `choices()`, the loop ends with every fixed note as
    given (its part plays nothing else inside their span), at least `min_onsets` onsets and
    no empty bar."""
    bars, steps = 3, bar_steps(meter)
    rng = np.random.default_rng(1)
    for _ in range(40):
        grammar = Grammar(
            meter, bars, parts, max_chord=3, min_onsets=min_onsets, fill_bars=True,
            bar_budget=per_step * steps if per_step else None, fixed=fixed,
        )  # fmt: skip
        while not grammar.done:
            choices = grammar.choices()
            assert len(choices) > 0 and np.all(np.diff(choices) > 0)
            grammar.advance(int(rng.choice(choices)))
        events = grammar.events
        assert set(map(tuple, fixed)) <= set(events)
        if fixed:
            part, first, last = fixed[0][1], min(e[0] for e in fixed), max(e[0] for e in fixed)
            inside = {e for e in events if e[1] == part and first <= e[0] <= last}
            assert inside == set(map(tuple, fixed))
        onset_steps = {e[0] for e in events}
        assert len(onset_steps) >= min_onsets
        assert {s // steps for s in onset_steps} == set(range(bars))


# -- harmony -------------------------------------------------------------------------------
def _chords(notes: list[Note], controls: Controls = CONTROLS, bars: int = 2) -> list[str]:
    tokens = with_chords(encode(notes, controls, bars, tonic=0))
    return [VOCAB[t] for t in tokens if t >= CHORD0]


def test_each_bar_gets_the_chord_its_notes_sound() -> None:
    c_major = [Note("lead", p, 0.0, 4.0, 90) for p in (60, 64, 67)]
    a_minor = [Note("bass", 45, 4.0, 4.0, 90)] + [
        Note("lead", p, 4.0, 4.0, 90) for p in (60, 64, 67, 69)
    ]
    assert _chords(c_major + a_minor) == ["CHORD_0maj", "CHORD_9min"]  # A in the bass decides
    g_dim = [Note("lead", p, 0.0, 2.0, 90) for p in (71, 74, 77)]
    assert _chords(g_dim, bars=1) == ["CHORD_11dim"]


def test_chords_are_key_relative_and_a_bar_without_pitches_has_none() -> None:
    d_major = [Note("lead", p, 0.0, 4.0, 90) for p in (62, 66, 69)]
    tokens = with_chords(encode(d_major + [Note("drums", 36, 4.0, 1.0, 90)], CONTROLS, 2, tonic=2))
    assert [VOCAB[t] for t in tokens if t >= CHORD0] == ["CHORD_0maj", "CHORD_none"]


def test_a_note_held_over_the_bar_line_counts_in_the_next_bar() -> None:
    held = [
        Note("bass", 43, 0.0, 8.0, 90),
        Note("lead", 71, 4.0, 1.0, 90),
        Note("lead", 74, 5.0, 1.0, 90),
    ]
    assert _chords(held) == ["CHORD_7maj", "CHORD_7maj"]  # G under B and D: G major
    assert _chords(held[1:])[0] == "CHORD_none"  # without the held G, bar 1 is silent


def test_the_harmony_grammar_asks_for_a_chord_after_each_bar_line() -> None:
    notes = [Note("lead", p, 0.0, 4.0, 90) for p in (60, 64, 67)] + [Note("bass", 41, 4.0, 4.0, 90)]
    plain = encode(notes, CONTROLS, 2, tonic=0)
    harmony = with_chords(plain)
    assert decode(harmony, 0) == decode(plain, 0)  # the chords change no note
    grammar = Grammar(CONTROLS.meter, 2, CONTROLS.parts, harmony=True)
    grammar.advance(BAR)
    assert list(grammar.choices()) == list(range(CHORD0, CHORD0 + N_CHORD))
    with pytest.raises(TokenError):
        grammar.advance(harmony[PREFIX_LEN + 2])  # a position before the bar's chord
    for token in harmony[PREFIX_LEN + 1 :]:
        grammar.advance(token)
    assert grammar.done and [VOCAB[t] for t in grammar.chords] == [
        "CHORD_0maj",
        "CHORD_5min",
    ]  # F alone in minor: iv
    assert with_chords(harmony) == harmony  # found once


@pytest.mark.parametrize(("mode", "chord"), [("minor", "CHORD_0min"), ("major", "CHORD_0maj")])
def test_an_open_fifth_is_the_modes_own_chord(mode: str, chord: str) -> None:
    fifth = [Note("bass", 36, 0.0, 4.0, 90), Note("lead", 67, 0.0, 4.0, 90)]
    controls = Controls("calm", mode, "slow", "low", "4/4", ("bass", "lead"))
    assert _chords(fifth, controls, bars=1) == [chord]
