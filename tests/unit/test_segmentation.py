"""pipeline.diarize.segmentation's pure helpers: encoder partials, constrained assignment.
No model is loaded."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.diarize.encoder import WINDOW_FRAMES, partial_windows
from pipeline.diarize.segmentation import _assign, _LocalSpeaker


def test_short_speech_is_repeated_to_one_partial():
    frames = np.arange(50 * 40, dtype=np.float32).reshape(50, 40)
    (only,) = partial_windows(frames)
    assert only.shape == (WINDOW_FRAMES, 40)
    assert np.array_equal(only[50:100], frames)


def test_long_speech_is_tiled_end_to_end():
    frames = np.arange(500, dtype=np.float32)[:, None].repeat(40, axis=1)
    parts = partial_windows(frames)
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


def test_mel_frames_a_minute_at_a_time_equal_resemblyzers_whole_file_spectrum():
    # 150 s of real speech: three blocks, so two seams; and a quiet copy (the gain applies),
    # a clip shorter than one window, and silence (left as it is, not NaN).
    import warnings
    from pathlib import Path

    import pyannote.audio
    import soundfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram

    from pipeline.diarize.encoder import MEL_BLOCK_FRAMES, mel_frames

    speech, _ = soundfile.read(Path(pyannote.audio.__file__).parent / "sample" / "sample.wav", dtype="float32")
    long = np.tile(speech, 5)
    assert len(long) // 160 > 2 * MEL_BLOCK_FRAMES
    for samples in (long, long * 0.001, speech[:12345]):
        expected = wav_to_mel_spectrogram(normalize_volume(samples, -30, increase_only=True))
        got = mel_frames(samples)
        assert got.shape == expected.shape and got.dtype == np.float32
        assert np.allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    silence = mel_frames(np.zeros(16000, dtype=np.float32))
    assert silence.shape == (101, 40) and not silence.any()
