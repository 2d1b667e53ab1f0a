"""Whisper's cross-attention word times stay on the VAD's speech and within their length
(issue 12; pipeline/word_times.py), with the bundled tiny.en model and real speech."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio import load_audio
from pipeline.plan import Request
from pipeline.schema import SAMPLE_RATE
from pipeline.word_times import max_word_seconds

TIMED = Request(response_format="whisperx")


def assert_bounded(transcript, speech: list[tuple[float, float]]) -> None:
    for w in transcript.words:
        assert w.end - w.start <= max_word_seconds(w.word) + 1e-3, w
        if w.end > w.start:  # a word with a length lies inside one speech region
            assert any(s - 1e-3 <= w.start and w.end <= e + 1e-3 for s, e in speech), (w, speech)


def test_no_word_spans_an_inserted_silence(local_pipeline, speak, tmp_path):
    first = load_audio(speak("The quick brown fox jumps over the lazy dog.")).samples
    second = load_audio(speak("Then it ran back into the dark forest.")).samples
    gap = 4.0
    samples = np.concatenate([first, np.zeros(int(gap * SAMPLE_RATE), np.float32), second])
    path = tmp_path / "pause.wav"
    sf.write(path, samples, SAMPLE_RATE)
    silence = (len(first) / SAMPLE_RATE, len(first) / SAMPLE_RATE + gap)

    speech = local_pipeline.vad.analyze(load_audio(path))
    assert len(speech.chunks) == 1  # one chunk holds both sentences and the silence
    transcript = local_pipeline.transcribe(path, TIMED)
    assert "fox" in transcript.text.lower() and "forest" in transcript.text.lower(), transcript.text
    assert_bounded(transcript, speech.speech)
    for w in transcript.words:
        assert w.end <= silence[0] + 0.3 or w.start >= silence[1] - 0.3, (w, silence)


@pytest.mark.slow
def test_sample_words_stay_on_speech(local_pipeline, pyannote_sample):
    speech = local_pipeline.vad.analyze(load_audio(pyannote_sample)).speech
    assert_bounded(local_pipeline.transcribe(pyannote_sample, TIMED), speech)


@pytest.mark.slow
def test_joins_and_long_words_on_shared_speech(local_pipeline, speech_dir):
    from benchmarks.bench_word_bounds import speech_edges
    from benchmarks.evaluation import boundary_errors, read_stm

    dev00 = speech_dir / "diarization" / "dev00.wav"
    transcript = local_pipeline.transcribe(dev00, TIMED)
    assert max(w.end - w.start for w in transcript.words) <= 2.0
    assert_bounded(transcript, local_pipeline.vad.analyze(load_audio(dev00)).speech)

    three = speech_dir / "diarization" / "librispeech_3spk_turns.flac"
    words = local_pipeline.transcribe(three, TIMED).words
    assert max(w.end - w.start for w in words) <= 2.0
    # Against the speech inside each utterance (the STM's edges add each LibriSpeech file's
    # own 0-0.6 s of room noise): measured median 0.118 s, p90 0.237 (BENCHMARKS.md section 10).
    errors = boundary_errors(speech_edges(three, read_stm(three.with_suffix(".stm"))), words)
    assert len(errors) >= 15 and np.median(errors) <= 0.15, errors
