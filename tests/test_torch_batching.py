"""Cross-request batching of the torch stages with the real models: requests analysed at the
same time (threads, as a replica runs them) share forward passes and each gets what it gets
alone. Runs on the CPU here; on a GPU the same code fills the device's batches."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple

import numpy as np
import pytest

from pipeline.audio import load_audio
from pipeline.schema import Audio


@pytest.fixture(scope="module")
def audios(pyannote_sample, speak):
    sample = load_audio(pyannote_sample)
    spoken = load_audio(speak("Windows from several requests can share a batch on the device. " * 3))
    # Different lengths, so every request has its own number of windows and a last window.
    return [sample, spoken, Audio(sample.samples[: 17 * 16000]), Audio(sample.samples[5 * 16000 :])]


def _same_turns(a, b, tolerance=0.05):
    """The same speakers in the same order, boundaries within `tolerance` s: float rounding of
    another batch size may move a boundary by a frame, never a speaker."""
    return len(a) == len(b) and all(
        x[2] == y[2] and abs(x[0] - y[0]) <= tolerance and abs(x[1] - y[1]) <= tolerance for x, y in zip(a, b)
    )


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


def test_speaker_windows_of_concurrent_requests_share_forwards(local_pipeline, diarizer, audios):
    speech = [local_pipeline.vad.analyze(a).speech for a in audios]
    jobs = list(zip(audios, speech)) * 2
    alone = [diarizer.diarize(a, s) for a, s in jobs]
    before = diarizer.batch_stats()["encoder"].shared
    together = _concurrently(lambda job: diarizer.diarize(*job), jobs)
    assert diarizer.batch_stats()["encoder"].shared > before
    assert all(alone) and all(
        _same_turns([astuple(t) for t in a], [astuple(t) for t in b]) for a, b in zip(alone, together)
    )


@pytest.mark.slow  # a ResNet34 embedding on the CPU: half a minute
def test_pyannote_pipeline_forwards_are_shared_across_concurrent_runs(monkeypatch, audios):
    """pyannote's own speaker-diarization recipe (the gpu profile's backend), built from local
    parts: the segmentation model that ships in whisperx and a WeSpeaker ResNet34 with random
    weights (the real embedding is gated), so its turns are meaningless; what is held is that
    concurrent runs share segmentation and embedding forwards and each gets its lone result."""
    import torch
    from pyannote.audio import Model
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from pyannote.audio.pipelines import speaker_diarization

    from pipeline.diarize import share_pyannote_forwards
    from pipeline.models import whisperx_vad_weights

    monkeypatch.setattr(speaker_diarization, "get_plda", lambda *a, **k: None)  # unused by this clustering
    torch.manual_seed(0)
    pipeline = speaker_diarization.SpeakerDiarization(
        segmentation=Model.from_pretrained(str(whisperx_vad_weights())),
        embedding=WeSpeakerResNet34().eval(),
        clustering="AgglomerativeClustering",
        segmentation_step=0.5,
        embedding_batch_size=4,
        segmentation_batch_size=4,
    )
    pipeline.instantiate(
        {
            "segmentation": {"threshold": 0.5, "min_duration_off": 0.0},
            "clustering": {"method": "centroid", "min_cluster_size": 2, "threshold": 0.7},
        }
    )
    batchers = share_pyannote_forwards(pipeline)
    assert set(batchers) == {"segmentation", "embedding"}
    clips = [Audio(a.samples[: 12 * 16000]) for a in audios[:2]]

    def run(audio):
        output = pipeline({"waveform": torch.from_numpy(audio.samples)[None], "sample_rate": 16000})
        return [
            (round(s.start, 3), round(s.end, 3), label)
            for s, _, label in output.speaker_diarization.itertracks(yield_label=True)
        ]

    alone = [run(a) for a in clips]
    together = _concurrently(run, clips * 2)
    assert all(alone) and all(_same_turns(a, b) for a, b in zip(alone * 2, together))
    assert batchers["segmentation"].stats.shared > 0 and batchers["embedding"].stats.shared > 0
