"""Accuracy on ../shared/data/speech against plain WhisperX run the same way in this session."""

from __future__ import annotations

import pytest

from benchmarks.evaluation import corpus_wer, read_references


@pytest.fixture(scope="module")
def english(speech_dir):
    return [r for r in read_references(speech_dir) if r.language == "en"]


def test_jfk(local_pipeline, speech_dir):
    t = local_pipeline.transcribe(speech_dir / "jfk.flac")  # 44.1 kHz stereo flac
    assert "ask not what your country can do for you" in t.text.lower()
    assert t.duration == pytest.approx(11.0, abs=0.01)


@pytest.mark.slow
def test_dev_set_wer_not_worse_than_plain_whisperx(local_pipeline, english):
    from benchmarks.common import PlainWhisperX

    assert len(english) == 40
    references = [r.text for r in english]
    paths = [r.path for r in english]
    baseline = PlainWhisperX(threads=2, batch_size=16)
    baseline_wer = corpus_wer(references, [baseline.transcribe(p) for p in paths])
    ours = [r.transcript.text for r in local_pipeline.transcribe_many(paths)]
    our_wer = corpus_wer(references, ours)
    print(
        f"\ncorpus WER over {len(paths)} files: plain WhisperX {100 * baseline_wer:.2f} %, "
        f"whisperx-serve {100 * our_wer:.2f} %"
    )
    assert our_wer <= baseline_wer + 0.005
