"""Word alignment: the real whisperx wav2vec2 path on a small local model, the cross-attention
fallback on real speech, interpolation of unalignable words, the model LRU, offline NLTK data.

The wav2vec2 model here is built by the test with random weights (no CTC model can be had
offline): its times are meaningless, so these tests assert structure and invariants only.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.evaluation import boundary_errors, normalize_english, read_stm
from pipeline.align import AlignConfig, Aligner, _fill_times
from pipeline.config import PipelineConfig
from pipeline.errors import ModelNotFound
from pipeline.runner import LocalPipeline
from tests.test_pipeline import assert_well_formed


def build_wav2vec2(folder):
    """A tiny Wav2Vec2ForCTC + processor saved as an HF model directory."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    from benchmarks.tiny_models import tiny_wav2vec2_ctc

    folder.mkdir(parents=True)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    for c in "abcdefghijklmnopqrstuvwxyz'":
        vocab[c] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(folder / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|"
    )
    features = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=False
    )
    Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(folder)
    tiny_wav2vec2_ctc(len(vocab), pad_token_id=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def wav2vec2_dirs(tiny_wav2vec2, tmp_path_factory):
    """Two model directories: the run's tiny model, and a second one for the LRU."""
    return tiny_wav2vec2, build_wav2vec2(tmp_path_factory.mktemp("w2v") / "tiny-b")


@pytest.fixture(scope="module")
def aligned_pipeline(wav2vec2_dirs):
    return LocalPipeline(PipelineConfig(align=AlignConfig(model=str(wav2vec2_dirs[0]))))


def test_wav2vec2_path_end_to_end(aligned_pipeline, local_pipeline, pyannote_sample):
    aligned = aligned_pipeline.transcribe(pyannote_sample)
    plain = local_pipeline.transcribe(pyannote_sample)
    assert aligned.models["align"] == "wav2vec2/local/tiny"
    assert plain.models["align"] == "whisper-cross-attention"
    # alignment times words; it never changes them
    assert normalize_english(aligned.text) == normalize_english(plain.text)
    assert_well_formed(aligned)
    for seg in aligned.segments:
        assert seg.start >= 0 and seg.end <= aligned.duration


def test_wav2vec2_with_digits_and_symbols(aligned_pipeline, speak):
    # Whisper writes numbers as digits: characters outside the CTC vocabulary.
    t = aligned_pipeline.transcribe(speak("In 2014 the ticket cost 13 pounds 60 and 5 percent tax."))
    assert any(ch.isdigit() for ch in t.text), t.text
    assert_well_formed(t)


def test_unalignable_words_are_interpolated():
    raw = [
        {"word": "It", "start": 1.0, "end": 1.2, "score": 0.9},
        {"word": "cost"},  # whisperx: no aligned characters
        {"word": "£13.60", "start": 5.0},
        {"word": "today.", "start": 2.0, "end": 2.4, "score": 0.8},
    ]
    words = _fill_times(raw, seg_start=0.5, seg_end=3.0)
    assert [w.word for w in words] == ["It", "cost", "£13.60", "today."]
    assert [w.interpolated for w in words] == [None, True, True, None]
    assert words[1].score == words[2].score == 0.0
    assert words[0].end <= words[1].start <= words[1].end <= words[2].start <= words[2].end <= words[3].start
    trailing = _fill_times([{"word": "a", "start": 0.1, "end": 0.2, "score": 1.0}, {"word": "2"}], 0.0, 1.0)
    assert (trailing[1].start, trailing[1].end) == (0.2, 1.0)


def test_alignment_models_are_a_bounded_lru(wav2vec2_dirs, local_pipeline, pyannote_sample):
    from pipeline.asr import DecodeOptions
    from pipeline.audio import load_audio

    audio = load_audio(pyannote_sample)
    chunks = local_pipeline.vad.chunks(audio, "x")
    results = local_pipeline.transcriber.transcribe_chunks(chunks, DecodeOptions(language="en"))
    a, b = wav2vec2_dirs
    aligner = Aligner(AlignConfig(model=str(a), language_models={"de": str(b)}, max_loaded_models=1))
    aligner.align(audio, results, "en")
    assert aligner.loaded() == [f"en:{a}"]
    aligner.align(audio, results, "de")  # the language only picks the model here
    assert aligner.loaded() == [f"de:{b}"]


def test_missing_alignment_models_name_the_setting(monkeypatch, tmp_path):
    from pipeline.schema import Audio, ChunkResult, Segment

    monkeypatch.delenv("WXS_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    audio = Audio(np.zeros(16000, np.float32))
    chunk = [ChunkResult("a", 0, "en", [Segment(0.0, 1.0, "hi")], 0.0, 1.0)]
    for model in ("default", "no-such-org/no-such-wav2vec2"):
        with pytest.raises(ModelNotFound) as info:
            Aligner(AlignConfig(model=model)).align(audio, chunk, "en")
        assert "--align-model" in str(info.value)


def test_sentence_splitting_works_offline(monkeypatch, tmp_path):
    import nltk

    from pipeline.punkt import ensure_punkt

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(nltk, "download", lambda *a, **k: pytest.fail("nltk.download called"))
    ensure_punkt(["english", "german"])
    splitter = nltk.data.load("tokenizers/punkt_tab/english.pickle")
    text = "Dr. Smith met Mr. Jones at 3 p.m. today. They talked! Did it help? Yes."
    assert [text[a:b] for a, b in splitter.span_tokenize(text)] == [
        "Dr. Smith met Mr. Jones at 3 p.m. today.",
        "They talked!",
        "Did it help?",
        "Yes.",
    ]


def test_cross_attention_word_boundaries(local_pipeline, speech_dir):
    folder = speech_dir / "diarization"
    t = local_pipeline.transcribe(folder / "librispeech_3spk_turns.flac")
    errors = boundary_errors(read_stm(folder / "librispeech_3spk_turns.stm"), t.words)
    assert len(errors) >= 18  # of 24 utterance boundaries; measured 23
    print(f"\nmedian word-boundary error at utterance joins: {np.median(errors):.3f} s")
    assert np.median(errors) < 0.45  # measured 0.284 s (joins include LibriSpeech's silences)
