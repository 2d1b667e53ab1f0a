"""Multilingual Whisper base, offline (`--model base` from the `multilingual` extra), on real
speech: the language vote, a given language, and translate.

The dev set's eight clips (../shared/data/speech/multilang, 4-9 s each) skip where that folder
is absent; the espeak-ng test runs everywhere. Full transcription of all eight clips (the vote
right on each, error-rate bounds) and translating fr/es are marked slow. Figures:
benchmarks/BENCHMARKS.md section 9.
"""

from __future__ import annotations

import re

import pytest

from pipeline import bundled
from pipeline.audio import load_audio
from pipeline.errors import InvalidOption, UnsupportedLanguage
from pipeline.plan import Request
from pipeline.vad import cut

pytestmark = pytest.mark.skipif(
    not bundled.installed("base"),
    reason=f"multilingual base is not installed: {bundled.install_hint('base')}",
)

LANGUAGES = ("de", "es", "fr", "it", "ja", "ko", "pt", "en")
# Loose bounds over measured figures (section 9): a broken language or decode fails them,
# the model's ordinary slips do not.
MAX_ERROR = {"de": 0.5, "es": 0.5, "fr": 0.5, "it": 0.6, "ja": 0.4, "ko": 0.5, "pt": 0.4, "en": 0.3}


@pytest.fixture(scope="module")
def clips(speech_dir):
    from benchmarks.evaluation import read_references

    refs = {r.language: r for r in read_references(speech_dir) if r.path.parent.name == "multilang"}
    assert sorted(refs) == sorted(LANGUAGES), "the dev set has one multilang clip per language"
    return refs


def vote(pipe, path, candidates: tuple[str, ...] = ()) -> str:
    """The pipeline's language vote for one file, as the runner takes it (VAD chunks, the
    plan's sample of them, the model's detection summed over the sample), without decoding."""
    audio = load_audio(path)
    speech = pipe.vad.analyze(audio)
    chunks = cut(audio, "0", speech.chunks, speech.speech)
    plan = pipe.plan(Request(response_format="text"))
    assert plan.detects_language and "language" in plan.stages()
    sample = [chunks[i] for i in plan.language_sample([(c.start, c.end) for c in chunks])]
    return pipe.transcriber.detect_language(sample, candidates=candidates)[0]


def test_base_is_the_offline_multilingual_package(base_pipeline):
    (card,) = base_pipeline.transcriber.cards
    assert card.model_id == "bundled/base" and card.multilingual
    assert {"de", "ja", "ko"} <= set(card.languages)
    assert base_pipeline.plan(Request()).models()["asr"] == "bundled/base"


def test_the_vote_picks_the_language_in_three_scripts(base_pipeline, clips):
    """Latin, Japanese and Hangul here; all eight clips in the slow test below."""
    voted = {lang: vote(base_pipeline, clips[lang].path) for lang in ("de", "ja", "ko")}
    assert voted == {"de": "de", "ja": "ja", "ko": "ko"}


def test_the_trimmed_language_pass_agrees_with_the_padded_one(base_pipeline, clips):
    """The language's encoder pass over each clip's own frames (the default) names the language
    the 30 s padded window names, and as surely, on every dev language."""
    from dataclasses import replace

    transcriber = base_pipeline.transcriber.first
    trimmed, padded = {}, {}
    for language, clip in clips.items():
        audio = load_audio(clip.path)
        chunks = cut(audio, "0", [(0.0, audio.duration)])
        trimmed[language] = transcriber.detect_language(chunks)
        transcriber.config = replace(transcriber.config, language_detection_trim=False)
        try:
            padded[language] = transcriber.detect_language(chunks)
        finally:
            transcriber.config = replace(transcriber.config, language_detection_trim=True)
    assert {k: v[0] for k, v in trimmed.items()} == {k: v[0] for k, v in padded.items()} == {k: k for k in clips}
    assert all(confidence >= 0.9 for _, confidence in trimmed.values()), trimmed


def test_languages_given_restrict_the_vote_to_them(base_pipeline, clips):
    """OpenAI's languages[]: the vote chooses among the candidates only."""
    assert vote(base_pipeline, clips["de"].path, ("ja", "de")) == "de"
    assert vote(base_pipeline, clips["de"].path, ("fr", "es")) in ("fr", "es")
    plan = base_pipeline.plan(Request(languages=("DE", "fr")))
    assert plan.detects_language and plan.language_candidates == ("de", "fr")
    assert base_pipeline.plan(Request(languages=("de",))).language == "de"  # one: it is the language


def test_a_given_language_is_used_without_a_vote(base_pipeline, clips):
    request = Request(language="de", response_format="text")
    assert "language" not in base_pipeline.plan(request).stages()
    transcript = base_pipeline.transcribe(clips["de"].path, request)
    assert transcript.language == "de"
    # Substrings: the int8 decode joins "portal liegende" on some CPUs (their SIMD differs).
    said = transcript.text.lower()
    assert all(word in said for word in ("portal", "raum", "genutzt")), transcript.text


def test_an_unsupported_or_english_only_choice_is_a_typed_error(base_pipeline):
    with pytest.raises(UnsupportedLanguage, match="'xx'"):
        base_pipeline.plan(Request(language="xx"))
    with pytest.raises(InvalidOption, match="task"):
        base_pipeline.plan(Request(task="summarize"))


def test_translate_gives_english(base_pipeline, clips):
    german = base_pipeline.transcribe(clips["de"].path, Request(task="translate", response_format="text"))
    assert german.language == "de", "the language reported is the one spoken"
    text = german.text.lower()
    assert text.isascii() and "portal" in text and " was used " in f" {text} ", german.text
    assert not {"wurde", "genutzt", "der", "diesem"} & set(re.findall(r"\w+", text)), german.text


def test_espeak_german_is_detected_and_transcribed(base_pipeline, speak):
    """Speech every install can make: espeak-ng speaking German."""
    text = "Guten Morgen. Heute ist das Wetter in Berlin sehr schön, und wir gehen in den Park."
    wav = speak(text, rate=140, voice="de")
    transcript = base_pipeline.transcribe(wav, Request(response_format="text"))
    assert transcript.language == "de", transcript.text
    words = set(re.findall(r"\w+", transcript.text.lower()))
    assert {"berlin", "park"} <= words, transcript.text


@pytest.mark.slow
def test_all_eight_clips_transcribe_with_the_language_voted(base_pipeline, clips):
    from benchmarks.evaluation import error_rate

    results = list(base_pipeline.transcribe_many([clips[lang].path for lang in LANGUAGES]))
    for lang, result in zip(LANGUAGES, results, strict=True):
        assert result.error is None and result.transcript is not None
        assert result.transcript.language == lang
        kind, rate = error_rate(clips[lang].text, result.transcript.text, lang)
        assert rate <= MAX_ERROR[lang], f"{lang} {kind} {rate:.2f}: {result.transcript.text!r}"


@pytest.mark.slow
def test_translate_french_and_spanish(base_pipeline, clips):
    request = Request(task="translate", response_format="text")
    french, spanish = (base_pipeline.transcribe(clips[lang].path, request) for lang in ("fr", "es"))
    assert french.language == "fr" and spanish.language == "es"
    assert french.text.isascii() and "consul" in french.text.lower(), french.text
    assert spanish.text.isascii() and "sand" in spanish.text.lower(), spanish.text
