"""/openapi.json: a valid OpenAPI 3.1 document (openapi-spec-validator) describing every route the
Ingress answers and every field the openai SDK sends; real rendered results match its schemas."""

from __future__ import annotations

import json
import typing

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from pipeline.formats import render
from pipeline.schema import Segment, Transcript, Turn, Word
from serve.openapi import DOCS_PAGE, docs_asset, document

SPEC = document()


def test_the_document_is_valid_openapi():
    validate(SPEC)  # raises naming the first violation


def test_every_route_is_described_and_nothing_else():
    from serve.ingress import ROUTES

    described = {(method.upper(), path) for path, item in SPEC["paths"].items() for method in item}
    assert described == set(ROUTES)


def _form_fields(path: str) -> dict:
    return SPEC["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]


def _sdk_fields(params) -> set[str]:
    """The SDK's form fields: list-typed ones it sends as `name[]`."""
    names = set()
    for name, hint in typing.get_type_hints(params).items():
        listed = "List" in str(hint) or "Sequence" in str(hint) or "list[" in str(hint)
        names.add(f"{name}[]" if listed else name)
    return names


def test_every_field_the_openai_sdk_sends_is_described():
    from openai.types.audio import transcription_create_params, translation_create_params

    transcription = _sdk_fields(transcription_create_params.TranscriptionCreateParamsBase)
    assert transcription - set(_form_fields("/v1/audio/transcriptions")) == set()
    assert (
        _sdk_fields(translation_create_params.TranslationCreateParams) - set(_form_fields("/v1/audio/translations"))
        == set()
    )


def test_openais_response_formats_are_the_sdks():
    from openai.types import AudioResponseFormat

    described = set(_form_fields("/v1/audio/transcriptions")["response_format"]["enum"])
    assert described == set(typing.get_args(AudioResponseFormat))


HELLO = [Word("Hello", 0.5, 1.0, 0.9, "SPEAKER_00"), Word("there.", 1.1, 2.0, 0.8, "SPEAKER_00")]
TRANSCRIPT = Transcript(
    language="en",
    duration=4.2,
    segments=[
        Segment(0.5, 2.0, " Hello there.", HELLO, speaker="SPEAKER_00"),
        Segment(2.5, 4.0, " Hi.", [Word("Hi.", 2.5, 4.0, 0.7, "Ada")], speaker="Ada"),
    ],
    models={"asr": "bundled/tiny.en"},
    speaker_turns=[Turn(0.5, 2.0, "SPEAKER_00"), Turn(2.5, 4.0, "Ada")],
)


@pytest.mark.parametrize(
    "fmt, schema",
    [("json", "Transcription"), ("verbose_json", "VerboseTranscription"),
     ("diarized_json", "DiarizedTranscription"), ("whisperx", "WhisperXResult")],
)  # fmt: skip
def test_rendered_results_match_their_schemas(fmt, schema):
    body = json.loads(render(TRANSCRIPT, fmt, task="transcribe", word_granularity=True))
    validator = OAS31Validator({"$ref": f"#/components/schemas/{schema}", "components": SPEC["components"]})
    errors = [e.message for e in validator.iter_errors(body)]
    assert errors == []
    assert list(OAS31Validator({"$ref": f"#/components/schemas/{schema}", "components": SPEC["components"]})
                .iter_errors({"segments": "not a list"}))  # fmt: skip


def test_docs_is_swagger_ui_from_the_package_and_serves_only_its_own_files():
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        assert f"/docs/{asset}" in DOCS_PAGE
        body, media = docs_asset(asset)
        assert len(body) > 10_000 and media.startswith("text/")
    assert "/openapi.json" in DOCS_PAGE
    assert docs_asset("../../etc/passwd") is None and docs_asset("index.j2") is None
