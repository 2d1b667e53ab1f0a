"""The server VAD's decisions (pipeline/turns.py) on a known speech timeline: the tracker is fed
silence and scored by a function of each frame's time, so every turn it finds can be checked
against the timeline; the model's own scores are tested through the service (test_realtime)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.turns import (
    HOP_FRAMES,
    MAX_TURN_S,
    STREAM_RATE,
    FrameGrid,
    TurnDetection,
    TurnEnded,
    TurnStarted,
    TurnTracker,
)

GRID = FrameGrid(window_samples=80000, frames=293, step_samples=270, first_middle=0.03096875)  # the model's
STEP_S = 0.1  # a client's append


def run(speech, seconds: float, detection: TurnDetection = TurnDetection(), score_of=None, start: float = 0.0):
    """Stream `seconds` of audio (from stream time `start`) whose frames score 0.9 inside
    `speech` regions, 0.1 outside; returns (stream time when decided, event) pairs."""
    tracker = TurnTracker(detection, GRID, start)

    def score(t: float) -> float:
        if score_of is not None:
            return score_of(t)
        return 0.9 if any(s <= t < e for s, e in speech) else 0.1

    events = []
    for _ in range(int(round(seconds / STEP_S))):
        tracker.feed(np.zeros(int(STREAM_RATE * STEP_S), dtype="<i2").tobytes())
        while (window := tracker.next_window()) is not None:
            times = (window.first_frame + np.arange(GRID.frames)) * GRID.step + GRID.first_middle
            events += [(tracker.received, e) for e in tracker.scored(window, np.array([score(t) for t in times]))]
    return events


def test_a_turn_starts_padded_and_ends_after_the_silence():
    events = run([(1.0, 3.0)], 6.0)
    assert [type(e) for _, e in events] == [TurnStarted, TurnEnded]
    (started_at, started), (ended_at, ended) = events
    assert started.start == pytest.approx(1.0 - 0.3, abs=0.03), "prefix_padding_ms before the speech"
    assert ended.end == pytest.approx(3.0 + 0.5, abs=0.03), "silence_duration_ms after it"
    assert 1.1 <= started_at <= 1.1 + 0.3 + 0.1, "announced after 100 ms of speech, within a hop"
    assert ended.end <= ended_at <= ended.end + 0.3 + 0.1, "decided within a hop of the silence's end"


def test_a_pause_shorter_than_the_silence_stays_in_the_turn():
    events = run([(1.0, 2.0), (2.3, 3.0), (4.0, 5.0)], 7.0)
    turns = [e for _, e in events]
    assert [type(e) for e in turns] == [TurnStarted, TurnEnded, TurnStarted, TurnEnded]
    assert turns[1].end == pytest.approx(3.5, abs=0.03) and turns[2].start == pytest.approx(3.7, abs=0.03)
    longer = run([(1.0, 2.0), (2.3, 3.0)], 5.0, TurnDetection(silence_duration_ms=200))
    assert len(longer) == 4, "a shorter silence splits there"


def test_a_click_is_no_turn_and_a_higher_threshold_hears_less():
    assert run([(1.0, 1.05)], 3.0) == []
    assert run([(1.0, 2.0)], 4.0, TurnDetection(threshold=0.95)) == []


def test_the_next_turns_padding_may_take_the_silence_before_but_no_speech():
    events = run([(1.0, 2.0), (2.6, 3.5)], 5.0)
    assert events[1][1].end == pytest.approx(2.5, abs=0.03)
    assert events[2][1].start == pytest.approx(2.3, abs=0.03), "its padding, inside the previous turn's silence"
    close = run([(1.0, 2.0), (2.15, 2.5), (3.1, 3.5)], 5.0, TurnDetection(silence_duration_ms=100))
    assert close[2][1].start == pytest.approx(2.0, abs=0.03), "never back into the speech before"


def test_a_long_turn_is_cut_at_its_quietest_moment():
    def score(t: float) -> float:  # speech throughout, a dip (still speech) every 7 s
        return 0.6 if (t % 7.0) < 0.2 else 0.95

    events = [e for _, e in run([], 70.0, score_of=score)]
    cuts = [e.end for e in events if isinstance(e, TurnEnded)]
    assert len(cuts) == 2
    assert all(c % 7.0 < 0.2 for c in cuts), "cut in a dip"
    starts = [e.start for e in events if isinstance(e, TurnStarted)]
    assert starts[1:] == cuts, "the turn goes on from the cut"
    assert all(b - a <= MAX_TURN_S + 0.1 for a, b in zip([starts[0], *cuts], cuts, strict=False))


def test_server_vad_turned_on_midway_keeps_the_streams_times():
    events = run([(41.0, 43.0)], 6.0, start=40.0)
    assert [type(e) for _, e in events] == [TurnStarted, TurnEnded]
    assert events[0][1].start == pytest.approx(40.7, abs=0.03) and events[1][1].end == pytest.approx(43.5, abs=0.03)
    assert run([(39.0, 42.0)], 6.0, start=40.0)[0][1].start == pytest.approx(40.0, abs=0.03), "nothing before it"


def test_a_reset_mid_speech_starts_the_next_turn_there():
    tracker = TurnTracker(TurnDetection(), GRID)
    tracker.reset(1.5)
    assert tracker.floor == 1.5 and tracker.keep_from() >= 1.5


def test_windows_come_every_hop_resampled_to_16k():
    tracker = TurnTracker(TurnDetection(), GRID)
    t = np.arange(STREAM_RATE * 6) / STREAM_RATE
    tone = (np.sin(2 * np.pi * 440 * t) * 16000).astype("<i2")
    firsts, window = [], None
    for at in range(0, len(tone), 2400):
        tracker.feed(tone[at : at + 2400].tobytes())
        while (w := tracker.next_window()) is not None:
            firsts.append(w.first_frame)
            window = w
    assert all(b - a >= HOP_FRAMES for a, b in zip(firsts, firsts[1:], strict=False))
    assert len(firsts) >= 6 / 0.3 - 1, "a window at least every third 100 ms append"
    assert window.samples.shape == (GRID.window_samples,) and window.samples.dtype == np.float32
    start = window.first_frame * GRID.step_samples / 16000
    expected = np.sin(2 * np.pi * 440 * (start + np.arange(GRID.window_samples) / 16000)) * 16000 / 32768
    assert np.abs(window.samples[100:-100] - expected[100:-100]).max() < 0.01, "the same sound at 16 kHz"
