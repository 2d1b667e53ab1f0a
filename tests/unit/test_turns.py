"""pipeline.diarize's pure helpers on synthetic data: clustering, windows, turns, speaker counts.
No speaker encoder is loaded."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from pipeline.diarize import FRAME_SECONDS, MAX_SPEAKERS, WINDOW_FRAMES, SpeakerCount, cluster
from pipeline.diarize.windows import embedding_windows, smoothed_turns
from pipeline.errors import InvalidOption
from pipeline.schema import Turn

WIDTH = WINDOW_FRAMES * FRAME_SECONDS  # 1.6 s


def blobs(sizes: list[int], order: list[int] | None = None, dim: int = 256, spread: float = 0.05, seed: int = 0):
    """Tight Gaussian blobs around random unit centres, normalised; returns (embeddings, truth)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.concatenate([np.full(n, k) for k, n in enumerate(sizes)])
    if order is not None:
        truth = truth[order]
    x = centres[truth] + spread * rng.normal(size=(len(truth), dim)) / np.sqrt(dim)
    return x / np.linalg.norm(x, axis=1, keepdims=True), truth


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a[:, None] == a[None, :], b[:, None] == b[None, :]))


# --- cluster -----------------------------------------------------------------------------------


def test_three_blobs_found_within_wide_bounds():
    x, truth = blobs([20, 20, 20])
    labels = cluster(x, 1, MAX_SPEAKERS)
    assert len(set(labels.tolist())) == 3
    assert same_partition(labels, truth)


def test_three_interleaved_blobs_found():
    rng = np.random.default_rng(1)
    order = rng.permutation(60)
    x, truth = blobs([20, 20, 20], order=order)
    labels = cluster(x, 1, 8)
    assert same_partition(labels, truth)


def test_labels_are_numbered_by_first_appearance():
    rng = np.random.default_rng(2)
    x, truth = blobs([15, 15, 15], order=rng.permutation(45))
    labels = cluster(x, 1, 8)
    firsts = [labels.tolist().index(k) for k in range(labels.max() + 1)]
    assert labels[0] == 0
    assert firsts == sorted(firsts), "label k first appears before label k+1"
    assert same_partition(labels, truth)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_fixed_count_is_honoured_exactly(k):
    x, _ = blobs([20, 20, 20])
    labels = cluster(x, k, k)
    assert len(labels) == 60
    assert sorted(set(labels.tolist())) == list(range(k))


def test_lower_bound_is_honoured():
    x, truth = blobs([30, 30])
    labels = cluster(x, 3, 8)
    assert len(set(labels.tolist())) >= 3


def test_upper_bound_is_honoured():
    x, _ = blobs([12, 12, 12, 12])
    labels = cluster(x, 1, 2)
    assert 1 <= len(set(labels.tolist())) <= 2


def test_single_blob_is_one_speaker():
    x, _ = blobs([25])
    assert cluster(x, 1, 8).tolist() == [0] * 25


def test_more_speakers_than_embeddings_is_capped():
    x, _ = blobs([1, 1], spread=0.0)
    labels = cluster(x, 1, 8)
    assert len(labels) == 2
    assert set(labels.tolist()) <= {0, 1}


def test_empty_and_single_embedding():
    assert cluster(np.zeros((0, 256)), 1, 8).tolist() == []
    assert cluster(blobs([1])[0], 1, 8).tolist() == [0]


def test_unnormalised_embeddings_cluster_the_same():
    x, truth = blobs([20, 20, 20])
    scale = np.random.default_rng(3).uniform(0.5, 5.0, size=(60, 1))
    assert same_partition(cluster(x * scale, 1, 8), truth)


# --- embedding_windows ------------------------------------------------------------------------


def test_windows_tile_a_long_region():
    windows = embedding_windows([(0.0, 10.0)], 10.0, 0.2)
    assert len(windows) > 10
    for start, end, own_from, own_to in windows:
        assert end - start == pytest.approx(WIDTH)
        assert 0.0 <= start and end <= 10.0 + 1e-9
        assert start <= own_from < own_to <= end + 1e-9
    assert windows[0][2] == 0.0 and windows[-1][3] == 10.0
    for prev, nxt in pairwise(windows):
        assert prev[3] == pytest.approx(nxt[2]), "owned spans are contiguous"
        assert nxt[0] - prev[0] <= 0.2 + 1e-9


def test_short_region_gets_one_centred_window():
    windows = embedding_windows([(4.0, 5.0)], 20.0, 0.2)
    assert len(windows) == 1
    start, end, own_from, own_to = windows[0]
    assert (own_from, own_to) == (4.0, 5.0)
    assert (start + end) / 2 == pytest.approx(4.5)
    assert end - start == pytest.approx(WIDTH)


def test_short_region_window_stays_inside_the_audio():
    (w,) = embedding_windows([(9.5, 10.0)], 10.0, 0.2)
    assert w[1] <= 10.0 + 1e-9 and w[0] >= 0.0
    (w,) = embedding_windows([(0.0, 0.4)], 10.0, 0.2)
    assert w[0] == 0.0


def test_windows_of_several_regions_are_in_time_order():
    windows = embedding_windows([(0.0, 3.0), (5.0, 5.5), (8.0, 12.0)], 12.0, 0.5)
    owned = [(w[2], w[3]) for w in windows]
    assert owned == sorted(owned)
    assert not any(3.0 < a < 5.0 or 5.5 < a < 8.0 for a, _ in owned), "no window owns silence"


# --- smoothed_turns ---------------------------------------------------------------------------


def spans(*parts: tuple[float, float, int]):
    """(start, end, label) owned spans -> windows and labels (window = owned span, padded)."""
    windows = [(max(0.0, s - 0.3), e + 0.3, s, e) for s, e, _ in parts]
    return windows, np.array([label for _, _, label in parts])


def test_same_speaker_windows_merge_into_turns_in_time_order():
    windows, labels = spans(*[(i * 1.0, i + 1.0, 0) for i in range(4)], *[(i * 1.0, i + 1.0, 1) for i in range(4, 8)])
    turns = smoothed_turns(windows, labels)
    assert turns == [Turn(0.0, 4.0, "SPEAKER_00"), Turn(4.0, 8.0, "SPEAKER_01")]


def test_small_gap_is_bridged_large_gap_is_not():
    bridged = spans((0, 1, 0), (1, 2, 0), (2, 3, 0), (3.5, 4.5, 0), (4.5, 5.5, 0), (5.5, 6.5, 0))
    assert smoothed_turns(*bridged) == [Turn(0.0, 6.5, "SPEAKER_00")]
    apart = spans((0, 1, 0), (1, 2, 0), (2, 3, 0), (5, 6, 0), (6, 7, 0), (7, 8, 0))
    assert smoothed_turns(*apart) == [Turn(0.0, 3.0, "SPEAKER_00"), Turn(5.0, 8.0, "SPEAKER_00")]


def test_short_turn_goes_to_the_longer_neighbour():
    # speaker 0 for 4 s, a 0.3 s turn of speaker 2, speaker 1 for 3 s: no majority around the
    # short window, so smoothing keeps it; min_turn then gives it to speaker 0 (the longer side).
    windows, labels = spans(
        (0, 1, 0), (1, 2, 0), (2, 3, 0), (3, 4, 0), (4.0, 4.3, 2), (4.3, 5.3, 1), (5.3, 6.3, 1), (6.3, 7.3, 1)
    )
    turns = smoothed_turns(windows, labels)
    assert turns == [Turn(0.0, 4.3, "SPEAKER_00"), Turn(4.3, 7.3, "SPEAKER_01")]


def test_short_turn_joins_the_other_side_when_it_is_longer():
    windows, labels = spans(
        (0, 1, 0), (1, 2, 0), (2, 3, 0), (3.0, 3.3, 2), (3.3, 4.3, 1), (4.3, 5.3, 1), (5.3, 6.3, 1), (6.3, 7.3, 1)
    )
    turns = smoothed_turns(windows, labels)
    assert turns == [Turn(0.0, 3.0, "SPEAKER_00"), Turn(3.0, 7.3, "SPEAKER_01")]


def test_isolated_outlier_window_is_smoothed_away():
    labels = [0] * 5 + [1] + [0] * 5
    windows, labels = spans(*[(i * 0.5, i * 0.5 + 0.5, label) for i, label in enumerate(labels)])
    assert smoothed_turns(windows, labels) == [Turn(0.0, 5.5, "SPEAKER_00")]


def test_turns_respect_min_turn_argument():
    windows, labels = spans((0, 1, 0), (1, 2, 0), (2, 3, 0), (3, 3.8, 2), (3.8, 5, 1), (5, 6, 1), (6, 7, 1))
    kept = smoothed_turns(windows, labels, min_turn=0.5)
    assert [t.speaker for t in kept] == ["SPEAKER_00", "SPEAKER_02", "SPEAKER_01"]
    dropped = smoothed_turns(windows, labels, min_turn=1.0)
    assert [t.speaker for t in dropped] == ["SPEAKER_00", "SPEAKER_01"]
    assert all(t.end - t.start >= 1.0 for t in dropped)


def test_single_short_turn_is_kept():
    windows, labels = spans((0.0, 0.3, 0))
    assert smoothed_turns(windows, labels) == [Turn(0.0, 0.3, "SPEAKER_00")]


def test_turns_over_real_windows_are_ordered_and_disjoint():
    speech = [(0.0, 6.0), (6.5, 12.0)]
    windows = embedding_windows(speech, 12.0, 0.2)
    labels = np.array([0 if w[2] < 6.0 else 1 for w in windows])
    turns = smoothed_turns(windows, labels)
    assert [t.speaker for t in turns] == ["SPEAKER_00", "SPEAKER_01"]
    assert turns[0].start == 0.0 and turns[-1].end == 12.0
    assert turns[0].end <= turns[1].start


# --- SpeakerCount ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "bounds"),
    [
        (SpeakerCount(), (1, MAX_SPEAKERS)),
        (SpeakerCount(num_speakers=3), (3, 3)),
        (SpeakerCount(num_speakers=32), (32, 32)),
        (SpeakerCount(min_speakers=2), (2, MAX_SPEAKERS)),
        (SpeakerCount(max_speakers=4), (1, 4)),
        (SpeakerCount(min_speakers=2, max_speakers=2), (2, 2)),
        (SpeakerCount(num_speakers=2, min_speakers=5, max_speakers=6), (2, 2)),
    ],
)
def test_speaker_count_bounds(count, bounds):
    assert count.bounds() == bounds


@pytest.mark.parametrize(
    "count",
    [
        SpeakerCount(num_speakers=0),
        SpeakerCount(num_speakers=33),
        SpeakerCount(num_speakers=-1),
        SpeakerCount(min_speakers=3, max_speakers=2),
        SpeakerCount(min_speakers=-2),
    ],
)
def test_speaker_count_invalid(count):
    with pytest.raises(InvalidOption):
        count.bounds()


def test_zero_max_speakers_is_invalid():
    with pytest.raises(InvalidOption):
        SpeakerCount(max_speakers=0).bounds()


def test_speaker_count_given():
    assert SpeakerCount().given is False
    assert SpeakerCount(num_speakers=1).given is True
    assert SpeakerCount(min_speakers=1).given is True
    assert SpeakerCount(max_speakers=1).given is True
