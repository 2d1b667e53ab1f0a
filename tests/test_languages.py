"""Every language by default (issue 22, item 0): the default service and CLI serve multilingual
Whisper base beside tiny.en, and the plan's rule sends English to tiny.en and anything else to
base, the language identified once by base. Through the real `openai` SDK and the real CLI.

The Korean, German and Japanese dev clips skip where ../shared is absent; espeak-ng German runs
everywhere (with base installed, as ./setup.sh does).
"""

from __future__ import annotations

import json
import re

import pytest

from pipeline import bundled
from tests.session import API_KEY

pytestmark = pytest.mark.skipif(
    not bundled.installed("base"),
    reason=f"multilingual base is not installed: {bundled.install_hint('base')}",
)

CLIPS = ("ko", "de", "ja")
# Loose bounds over base's measured error on these clips (BENCHMARKS.md section 9): a wrong
# language or a broken decode fails them, the model's ordinary slips do not.
MAX_ERROR = {"de": 0.5, "ja": 0.4, "ko": 0.5}
LANGUAGE_NAMES = {"ko": "korean", "de": "german", "ja": "japanese", "en": "english"}


@pytest.fixture(scope="module")
def clips(speech_dir):
    from benchmarks.evaluation import read_references

    refs = {r.language: r for r in read_references(speech_dir) if r.path.parent.name == "multilang"}
    return {lang: refs[lang] for lang in CLIPS}


@pytest.fixture
def sdk(service):
    import openai

    return openai.OpenAI(base_url=f"{service.base}/v1", api_key=API_KEY, max_retries=0)


def transcribe(sdk, path, **options):
    """verbose_json through the SDK, with the model that ran (the X-WhisperX-Model header)."""
    with open(path, "rb") as f:
        raw = sdk.audio.transcriptions.with_raw_response.create(
            model=options.pop("model", "whisper-1"),
            file=f,
            response_format="verbose_json",
            extra_headers={"Cache-Control": "no-cache"},
            **options,
        )
    return raw.parse(), raw.headers["x-whisperx-model"]


def test_the_default_service_answers_each_language_in_it(sdk, clips, speech_dir):
    from benchmarks.evaluation import error_rate

    for lang, ref in clips.items():
        result, model = transcribe(sdk, ref.path)
        assert (result.language, model) == (LANGUAGE_NAMES[lang], "bundled/base"), result.text
        kind, rate = error_rate(ref.text, result.text, lang)
        assert rate <= MAX_ERROR[lang], f"{lang}: {kind} {rate:.2f}: {result.text!r}"
    english, model = transcribe(sdk, speech_dir / "jfk.flac")
    assert (english.language, model) == ("english", "bundled/tiny.en")  # English: the fast model
    assert "ask not what your country" in english.text.lower()


def test_espeak_german_and_english_route_to_their_models(sdk, speak, pyannote_sample):
    german, model = transcribe(sdk, speak("Guten Morgen. Heute ist das Wetter in Berlin sehr schön.", 140, "de"))
    assert (german.language, model) == ("german", "bundled/base")
    assert "berlin" in german.text.lower()
    english, model = transcribe(sdk, pyannote_sample)
    assert (english.language, model) == ("english", "bundled/tiny.en") and "New Jersey" in english.text


def test_model_names_one_of_those_served(sdk, service, pyannote_sample):
    import openai

    listed = [m.id for m in sdk.models.list()]
    assert listed == ["whisper-1", "bundled/base", "bundled/tiny.en"]
    # Naming a model runs it, whatever the rule would pick: base decodes English too.
    result, model = transcribe(sdk, pyannote_sample, model="base")
    assert (result.language, model) == ("english", "bundled/base") and "Jersey" in result.text
    with pytest.raises(openai.BadRequestError) as refused:
        transcribe(sdk, pyannote_sample, model="large-v9")
    error = refused.value.body
    assert error["code"] == "model_not_found" and all(n in error["message"] for n in listed)
    with pytest.raises(openai.UnprocessableEntityError, match="not supported by bundled/tiny.en"):
        transcribe(sdk, pyannote_sample, model="tiny.en", language="de")


def test_the_default_cli_answers_each_language_in_it(speak, pyannote_sample, tmp_path, capsys):
    from pipeline.cli import main

    german = speak("Guten Morgen. Heute ist das Wetter in Berlin sehr schön.", 140, "de")
    assert main(["transcribe", str(german), str(pyannote_sample), "--output-dir", str(tmp_path)]) == 0
    de = json.loads((tmp_path / f"{german.stem}.json").read_text())
    en = json.loads((tmp_path / "sample.json").read_text())
    assert (de["language"], de["models"]["asr"]) == ("de", "bundled/base")
    assert "berlin" in re.findall(r"\w+", de["text"].lower())
    assert (en["language"], en["models"]["asr"]) == ("en", "bundled/tiny.en") and "New Jersey" in en["text"]


def test_the_default_cli_on_the_dev_clips(clips, tmp_path):
    from benchmarks.evaluation import error_rate
    from pipeline.cli import main

    assert main(["transcribe", *(str(ref.path) for ref in clips.values()), "--output-dir", str(tmp_path)]) == 0
    for lang, ref in clips.items():
        body = json.loads((tmp_path / f"{ref.path.stem}.json").read_text())
        assert (body["language"], body["models"]["asr"]) == (lang, "bundled/base")
        kind, rate = error_rate(ref.text, body["text"], lang)
        assert rate <= MAX_ERROR[lang], f"{lang}: {kind} {rate:.2f}: {body['text']!r}"


def test_translations_usage_and_logprobs_through_the_sdk(sdk, speak, pyannote_sample):
    import openai

    german = speak("Guten Morgen. Heute ist das Wetter in Berlin sehr schön.", 140, "de")
    with open(german, "rb") as f:
        raw = sdk.audio.translations.with_raw_response.create(model="whisper-1", file=f, response_format="verbose_json")
    translated = raw.parse()
    assert raw.headers["x-whisperx-model"] == "bundled/base" and translated.task == "translate"
    words = set(re.findall(r"\w+", translated.text.lower()))
    assert "berlin" in words and words & {"weather", "morning", "today"}, translated.text
    assert not words & {"guten", "heute", "wetter", "sehr"}, translated.text  # English, not German
    with open(german, "rb") as f:
        assert "Berlin" in sdk.audio.translations.create(model="whisper-1", file=f, response_format="text")
    # usage, as OpenAI bills a duration: the input's seconds rounded up
    with open(pyannote_sample, "rb") as f:
        plain = sdk.audio.transcriptions.create(model="whisper-1", file=f)
    assert plain.usage.type == "duration" and plain.usage.seconds == 30
    with open(pyannote_sample, "rb") as f, pytest.raises(openai.BadRequestError, match="per-token"):
        sdk.audio.transcriptions.create(model="whisper-1", file=f, include=["logprobs"])
