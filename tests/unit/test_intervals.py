"""pipeline.intervals: each bisection gives what a scan over all the regions gives."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.intervals import EPSILON, OverlapIndex, Regions, clip_turns, overlap
from pipeline.schema import Turn


def random_regions(rng, n: int, disjoint: bool) -> list[tuple[float, float]]:
    """Times on a 0.5 s grid, so that regions touch and tie; zero-length ones included."""
    if disjoint:
        edges = np.sort(rng.choice(np.arange(0, 40, 0.5), 2 * n, replace=False))
        return [(float(edges[2 * i]), float(edges[2 * i + 1])) for i in range(n)]
    starts = rng.choice(np.arange(0, 20, 0.5), n)
    return [(float(s), float(s + rng.choice([0.0, 0.5, 1.0, 3.0]))) for s in starts]


def scan_clip(regions, start, end, min_seconds=0.0):
    pieces = [(max(start, s), min(end, e)) for s, e in regions]
    return [(s, e) for s, e in pieces if e - s > 0 and e - s >= min_seconds]


def scan_holding(regions, t, closed):
    return next((i for i, (s, e) in enumerate(regions) if s <= t < e or (closed and s <= t <= e)), None)


def scan_most_overlapping(regions, start, end):
    best, most = None, 0.0
    for i, (s, e) in enumerate(regions):
        if min(end, e) - max(start, s) > most:
            best, most = i, min(end, e) - max(start, s)
    return best


def scan_nearest(regions, t):
    return min(range(len(regions)), key=lambda i: max(regions[i][0] - t, t - regions[i][1], 0.0), default=None)


@pytest.mark.parametrize("seed", range(20))
def test_regions_match_a_scan(seed):
    rng = np.random.default_rng(seed)
    spans = random_regions(rng, 8, disjoint=True)
    regions = Regions.of(spans[::-1])
    assert regions.spans == tuple(sorted(spans))
    for t in np.arange(-1, 42, 0.25):
        for closed in (False, True):
            assert regions.holding(t, closed) == scan_holding(regions.spans, t, closed)
        assert bool(regions.inside(np.array([t]))[0]) == (scan_holding(regions.spans, t, False) is not None)
        for length in (0.0, 0.25, 1.0, 7.5, -1.0):
            assert regions.clip(t, t + length, EPSILON) == scan_clip(regions.spans, t, t + length, EPSILON)


@pytest.mark.parametrize("seed", range(20))
def test_overlap_index_matches_a_scan(seed):
    rng = np.random.default_rng(seed)
    turns = random_regions(rng, int(rng.integers(1, 12)), disjoint=False) + [(5.0, 4.0)]  # one inverted
    index = OverlapIndex(turns)
    for start in np.arange(-1, 25, 0.25):
        assert index.nearest(start) == scan_nearest(turns, start)
        for length in (0.0, 0.25, 1.0, 4.0):
            assert index.most_overlapping(start, start + length) == scan_most_overlapping(turns, start, start + length)


def test_overlapping_regions_are_joined_and_empty_ones_dropped():
    assert Regions.of([(3.0, 5.0), (1.0, 2.0), (4.0, 6.0), (2.0, 2.5), (7.0, 7.0)]).spans == (
        (1.0, 2.0),
        (2.0, 2.5),
        (3.0, 6.0),
    )


def test_within_clips_sorts_and_rounds():
    speech = [(12.0, 14.0), (0.5, 2.0), (3.0, 5.0), (20.0, 21.0)]
    assert Regions.of(speech).within(1.0, 13.0) == ((1.0, 2.0), (3.0, 5.0), (12.0, 13.0))
    assert Regions.of(speech).within(5.0, 12.0) == ()
    assert Regions.of([(0.12345, 1.0)]).within(0.0, 0.5) == ((0.123, 0.5),)


def test_inside_regions():
    regions = Regions([(1.0, 2.0), (3.0, 4.5)])
    times = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.2, 4.6])
    assert regions.inside(times).tolist() == [False, True, True, False, False, True, False]
    assert Regions().inside(times).tolist() == [False] * 7


def test_turns_are_cut_to_speech():
    turns = [Turn(0.5, 6.0, "SPEAKER_00"), Turn(5.0, 5.5, "SPEAKER_01"), Turn(2.0, 2.01, "SPEAKER_02")]
    clipped = clip_turns(turns, Regions([(1.0, 2.0), (2.0, 2.015), (4.0, 5.2)]))
    assert clipped == [Turn(1.0, 2.0, "SPEAKER_00"), Turn(4.0, 5.2, "SPEAKER_00"), Turn(5.0, 5.2, "SPEAKER_01")]


def test_overlap_length():
    assert overlap((0.0, 2.0), (1.0, 3.0)) == 1.0
    assert overlap((0.0, 1.0), (2.0, 3.0)) == 0.0


def test_asr_chunks_are_clipped_to_the_audio_but_never_joined():
    from pipeline.vad import _clip_chunks

    # Joined, the overlapping pair would be one 40 s chunk: over Whisper's 30 s window.
    assert _clip_chunks([(0.0, 10.0), (5.0, 40.0), (-1.0, 0.01), (45.0, 60.0)], 50.0) == [
        (0.0, 10.0),
        (5.0, 40.0),
        (45.0, 50.0),
    ]
