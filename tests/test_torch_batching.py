"""Cross-request batching of the torch stages with the real models: requests analysed at the
same time (threads, as a replica runs them) share forward passes and each gets what it gets
alone. Runs on the CPU here; on a GPU the same code fills the device's batches."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from pipeline.audio import load_audio
from pipeline.diarize import Diarizer
from pipeline.schema import Audio


@pytest.fixture(scope="module")
def audios(pyannote_sample, speak):
    sample = load_audio(pyannote_sample)
    spoken = load_audio(speak("Windows from several requests can share a batch on the device. " * 3))
    # Different lengths, so every request has its own number of windows and a last window.
    return [sample, spoken, Audio(sample.samples[: 17 * 16000]), Audio(sample.samples[5 * 16000 :])]


def _concurrently(fn, items):
    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(fn, items))


def test_vad_windows_of_concurrent_requests_share_forwards(local_pipeline, audios):
    vad = local_pipeline.vad
    alone = [vad.analyze(a) for a in audios]
    before = vad.batcher.stats.shared
    together = _concurrently(vad.analyze, audios * 2)
    assert vad.batcher.stats.shared > before  # some forward served several requests
    for a, t in zip(alone * 2, together):
        # The same regions; boundaries may move by float rounding of another batch size only.
        assert len(a.speech) == len(t.speech) and len(a.chunks) == len(t.chunks)
        np.testing.assert_allclose(np.array(a.speech), np.array(t.speech), atol=0.02)
        np.testing.assert_allclose(np.array(a.chunks), np.array(t.chunks), atol=0.02)


def test_speaker_windows_of_concurrent_requests_share_forwards(local_pipeline, audios):
    diarizer = Diarizer()
    speech = [local_pipeline.vad.analyze(a).speech for a in audios]
    jobs = list(zip(audios, speech)) * 2
    alone = [diarizer.diarize(a, s) for a, s in jobs]
    batcher = diarizer.batch_stats()
    before = batcher.shared
    together = _concurrently(lambda job: diarizer.diarize(*job), jobs)
    assert diarizer.batch_stats().shared > before
    assert together == alone and all(together)
