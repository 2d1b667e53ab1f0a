"""pipeline.vad.utterances: server_vad's silence and padding on the VAD's turns."""

from __future__ import annotations

from pipeline.vad import utterances

TURNS = [(1.0, 3.0), (3.3, 5.0), (6.0, 8.0), (8.1, 29.0)]


def test_nothing_asked_keeps_whisperxs_turns():
    assert utterances(TURNS, 0.0, 0.0, 30.0) == TURNS


def test_short_pauses_are_closed_but_never_past_the_chunk_limit():
    assert utterances(TURNS, 0.5, 0.0, 30.0) == [(1.0, 5.0), (6.0, 29.0)]
    assert utterances(TURNS, 2.0, 0.0, 30.0) == [(1.0, 29.0)]
    assert utterances(TURNS, 2.0, 0.0, 20.0) == [(1.0, 8.0), (8.1, 29.0)]  # 1-29 would not fit 20 s
    assert utterances([(0.0, 20.0), (20.1, 35.0)], 1.0, 0.0, 30.0) == [(0.0, 20.0), (20.1, 35.0)]


def padded(turns, pad, limit=30.0):
    return [(round(s, 6), round(e, 6)) for s, e in utterances(turns, 0.0, pad, limit)]


def test_padding_starts_earlier_but_not_into_the_turn_before_nor_past_the_limit():
    assert padded([(1.0, 3.0), (3.2, 5.0)], 0.3) == [(0.7, 3.0), (3.0, 5.0)]
    assert padded([(0.1, 2.0)], 0.3) == [(0.0, 2.0)]
    assert padded([(5.0, 34.9)], 0.3) == [(4.9, 34.9)]  # 30 s at most
