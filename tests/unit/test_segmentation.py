"""pipeline.diarize.segmentation's pure helpers: encoder partials, constrained assignment.
No model is loaded."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.diarize.encoder import WINDOW_FRAMES
from pipeline.diarize.segmentation import _assign, _LocalSpeaker, _partials


def test_short_speech_is_repeated_to_one_partial():
    frames = np.arange(50 * 40, dtype=np.float32).reshape(50, 40)
    (only,) = _partials(frames)
    assert only.shape == (WINDOW_FRAMES, 40)
    assert np.array_equal(only[50:100], frames)


def test_long_speech_is_tiled_end_to_end():
    frames = np.arange(500, dtype=np.float32)[:, None].repeat(40, axis=1)
    parts = _partials(frames)
    assert len(parts) == 4  # ceil((500 - 160) / 160) + 1 windows of 160 frames
    assert parts[0][0, 0] == 0 and parts[-1][-1, 0] == 499
    assert all(p.shape == (WINDOW_FRAMES, 40) for p in parts)


def test_two_speakers_of_one_chunk_never_share_a_cluster():
    centroids = np.eye(3)[:2]
    # Both local speakers of chunk 0 look most like centroid 0; the weaker goes to centroid 1.
    embeddings = np.array([[0.9, 0.1, 0.0], [0.8, 0.3, 0.0], [0.0, 1.0, 0.0]])
    locals_ = [_local(0, 0), _local(0, 1), _local(1, 2)]
    hard = _assign(locals_, embeddings, centroids, (2, 3), linear_sum_assignment)
    assert hard[0, 0] == 0 and hard[0, 1] == 1
    assert hard[1, 2] == 1
    assert hard[0, 2] == -2 and hard[1, 0] == -2  # inactive slots belong to no cluster


def test_more_local_speakers_than_clusters_take_their_best():
    embeddings = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2]])
    hard = _assign([_local(0, k) for k in range(3)], embeddings, np.array([[1.0, 0.0]]), (1, 3), linear_sum_assignment)
    assert hard.tolist() == [[0, 0, 0]]


def _local(chunk: int, slot: int) -> _LocalSpeaker:
    return _LocalSpeaker(chunk=chunk, slot=slot, clean_seconds=2.0, mel_index=np.arange(10))
