"""The progressive VAD (pipeline.vad_pieces) against the whole pass, on real speech: every chunk it
announces early, with its speech, is the whole pass's, for WhisperX's regions and server_vad's."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from pipeline.intervals import Regions
from pipeline.schema import SAMPLE_RATE, Audio
from pipeline.vad import SpeechDetector, VadOptions


@pytest.fixture(scope="module")
def detector() -> SpeechDetector:
    return SpeechDetector(VadOptions())


@pytest.fixture(scope="module")
def call(pyannote_sample) -> Audio:
    """sample.wav four times over, with pauses between (2 min: several pieces, several chunks)."""
    samples, rate = sf.read(pyannote_sample, dtype="float32")
    assert rate == SAMPLE_RATE
    pause = np.zeros(int(1.3 * SAMPLE_RATE), np.float32)
    tiled = np.concatenate([part for _ in range(4) for part in (samples, pause)])[: -len(pause) // 2]
    tiled.setflags(write=False)  # as the object store hands it over
    return Audio(tiled)


SERVER_VAD = VadOptions(onset=0.6, offset=0.6 * 0.363 / 0.5, min_silence_seconds=0.8, pad_onset_seconds=0.3)


@pytest.mark.parametrize(("regions", "first_windows"), [(None, 4), (SERVER_VAD, 8)], ids=["whisperx", "server_vad"])
def test_announced_chunks_are_the_whole_pass(detector, call, regions, first_windows):
    whole = detector.analyze(call, regions)
    announced: list[list] = []
    progressive = detector.analyze_progressively(call, regions, announced.append, first_windows=first_windows)
    assert progressive == whole
    chunks = [c for batch in announced for c in batch]
    assert len(whole.chunks) >= 4
    assert [(c.start, c.end) for c in chunks] == whole.chunks
    assert [c.index for c in chunks] == list(range(len(whole.chunks)))
    speech = Regions.of(whole.speech)
    assert [c.speech for c in chunks] == [speech.within(s, e) for s, e in whole.chunks]
    assert sum(1 for batch in announced if batch) >= 2, "some chunks come before the whole audio is scored"
    assert len(announced[0]) < len(whole.chunks)


def test_a_raising_callback_abandons_the_scoring(detector, call):
    class Abandoned(Exception):
        pass

    def stop(chunks):
        raise Abandoned

    with pytest.raises(Abandoned):
        detector.analyze_progressively(call, None, stop, first_windows=4)


def test_silence_and_tiny_audio_announce_nothing(detector):
    for samples in (np.zeros(SAMPLE_RATE // 20, np.float32), np.zeros(40 * SAMPLE_RATE, np.float32)):
        announced: list[list] = []
        speech = detector.analyze_progressively(Audio(samples), None, announced.append, first_windows=4)
        assert speech.chunks == [] and [c for batch in announced for c in batch] == []
