"""pipeline.word_times: cross-attention word times kept on speech (no models)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import word_times
from pipeline.schema import Audio, Word
from pipeline.vad import cut
from pipeline.word_times import bound_words, max_word_seconds


def words(*spans: tuple[str, float, float]) -> list[Word]:
    return [Word(w, s, e) for w, s, e in spans]


def times(ws: list[Word]) -> list[tuple[float, float]]:
    return [(w.start, w.end) for w in ws]


def test_cut_gives_each_chunk_its_speech():
    audio = Audio(np.zeros(16_000 * 40, dtype=np.float32))
    chunks = cut(audio, "a", [(0.5, 14.0), (20.0, 39.0)], [(0.5, 4.0), (6.0, 14.0), (20.0, 39.0)])
    assert [c.speech for c in chunks] == [((0.5, 4.0), (6.0, 14.0)), ((20.0, 39.0),)]
    assert cut(audio, "a", [(0.5, 14.0)])[0].speech == ()


def test_word_before_a_pause_ends_with_the_speech():
    # "Okay." ran over a 12 s pause to the next region, where the next word starts.
    ws = words((" Okay.", 4.49, 17.67), (" So", 17.67, 17.9))
    bound_words(ws, [(4.3, 5.0), (17.6, 19.0)])
    assert times(ws) == [(4.49, 5.0), (17.67, 17.9)]


def test_word_starting_in_a_pause_is_clipped_to_the_region_holding_most_of_it():
    ws = words((" well", 9.95, 10.6), (" then", 11.0, 11.3))
    bound_words(ws, [(2.0, 9.9), (10.1, 12.0)])
    assert times(ws) == [(10.1, 10.6), (11.0, 11.3)]


def test_word_starting_on_speech_keeps_that_region():
    # The path entered the word at 9.8 (on speech); the stretched side is its end.
    ws = words((" well", 9.8, 10.6))
    bound_words(ws, [(2.0, 9.9), (10.1, 12.0)])
    assert times(ws) == [(9.8, 9.9)]


def test_word_in_a_pause_moves_to_the_speech_between_its_neighbours():
    ws = words((" a", 1.0, 1.5), (" b", 2.2, 2.6), (" c", 3.1, 3.4))
    bound_words(ws, [(0.9, 1.6), (3.0, 3.6)])  # nothing was heard at 2.2-2.6
    assert ws[0].end <= ws[1].start <= ws[1].end <= ws[2].start
    assert (ws[1].start, ws[1].end) == (3.0, 3.1)  # nearer the next region: it starts it


def test_no_word_outlasts_its_cap_and_order_is_kept():
    ws = words((" I", 0.0, 3.0), (" extraordinarily", 3.0, 9.0), (" so", 9.0, 9.4))
    bound_words(ws, [])  # speech unknown: the cap alone
    assert all(w.end - w.start <= max_word_seconds(w.word) + 1e-9 for w in ws)
    assert [w.start for w in ws] == [0.0, 3.0, 9.0]
    assert max_word_seconds("I") < max_word_seconds("extraordinarily") <= word_times.MAX_S <= 2.0


def test_times_inside_speech_are_unchanged():
    ws = words((" the", 1.0, 1.2), (" cat", 1.2, 1.6), (" sat.", 1.6, 2.0), (" x", 2.0, 2.0))
    expected = times(ws)
    bound_words(ws, [(0.8, 2.1)])
    assert times(ws) == expected


@pytest.mark.parametrize("speech", [[], [(0.0, 30.0)], [(0.0, 1.0), (5.0, 6.0), (20.0, 30.0)]])
def test_random_words_stay_on_speech_ordered_and_capped(speech):
    rng = np.random.default_rng(len(speech))
    edges = np.sort(rng.uniform(0, 30, 41))
    ws = [Word(" word", float(a), float(b)) for a, b in zip(edges[:-1], edges[1:])]
    bound_words(ws, speech)
    for previous, w in zip(ws, ws[1:]):
        assert previous.end <= w.start + 1e-9
    for w in ws:
        assert w.start <= w.end and w.end - w.start <= max_word_seconds(w.word) + 1e-9
        if speech and w.end > w.start:
            assert any(s <= w.start and w.end <= e for s, e in speech), (w, speech)
