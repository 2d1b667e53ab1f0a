"""torch.compile of the torch stages on real models (slow suite: compiling takes minutes on a
2-core CPU). Each compiled stage must give what the eager one gives on real speech, within
a stated tolerance; whether compiling is worth it is measured in benchmarks/bench_gpu.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.align import AlignConfig, Aligner
from pipeline.asr import DecodeOptions
from pipeline.audio import load_audio
from pipeline.diarize import DiarizeConfig, Diarizer
from pipeline.placement import Placement
from pipeline.torch_runtime import TorchRuntime
from pipeline.vad import SpeechDetector, VadOptions

pytestmark = pytest.mark.slow

COMPILED = TorchRuntime(compile=True)
PLACEMENT = Placement.local_cpu()


@pytest.fixture(scope="module")
def audio(pyannote_sample):
    return load_audio(pyannote_sample)


@pytest.fixture(scope="module")
def speech(audio, local_pipeline):
    return local_pipeline.vad.analyze(audio)  # the eager VAD the run shares


def test_compiled_vad_finds_the_same_regions(audio, speech):
    compiled = SpeechDetector(VadOptions(runtime=COMPILED), PLACEMENT).analyze(audio)
    assert compiled.chunks and len(compiled.speech) == len(speech.speech)
    # Region edges within one 17 ms frame of the eager model's.
    assert np.allclose(np.array(compiled.speech), np.array(speech.speech), atol=0.02)
    assert np.allclose(np.array(compiled.chunks), np.array(speech.chunks), atol=0.02)


def test_compiled_speaker_encoder_gives_the_same_turns(audio, speech, windows_diarizer):
    # The windows method embeds given windows directly (the segmentation method shares its encoder).
    eager = windows_diarizer
    compiled = Diarizer(DiarizeConfig(method="windows", runtime=COMPILED), PLACEMENT)
    windows = [(s, s + 1.6, s, s + 1.6) for s in np.arange(0.0, 28.0, 0.8)]
    a = eager._backend._embed(audio, windows)
    b = compiled._backend._embed(audio, windows)
    assert np.min(np.sum(a * b, axis=1)) > 0.9999  # unit vectors: cosine similarity
    assert compiled.diarize(audio, speech.speech) == eager.diarize(audio, speech.speech)


def test_compiled_wav2vec2_gives_the_same_word_times(audio, local_pipeline, tiny_wav2vec2):
    model = str(tiny_wav2vec2)
    chunks = local_pipeline.vad.chunks(audio, "x")
    results = local_pipeline.transcriber.transcribe_chunks(chunks, DecodeOptions(language="en"))
    eager = Aligner(AlignConfig(model=model), PLACEMENT).align(audio, results, "en")
    compiled = Aligner(AlignConfig(model=model, runtime=COMPILED), PLACEMENT).align(audio, results, "en")
    words_a = [w for s in eager for w in s.words]
    words_b = [w for s in compiled for w in s.words]
    assert [w.word for w in words_a] == [w.word for w in words_b] and words_a
    # CTC frames are 20 ms: the same path within one frame.
    assert max(abs(a.start - b.start) + abs(a.end - b.end) for a, b in zip(words_a, words_b)) <= 0.04
