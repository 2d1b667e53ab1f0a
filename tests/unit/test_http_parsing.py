"""serve.http: upload reading and form/query parsing through an in-process ASGI app (no Ray)."""

from __future__ import annotations

from dataclasses import asdict

import pytest
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError
from pipeline.models import AsrCard
from pipeline.plan import Planner
from serve.errors import RequestError, error_response, status_of
from serve.http import native_request, openai_request, openai_translation_request, read_upload

MAX_BYTES = 1000
ENVELOPE = 64 * 1024
AUDIO = b"RIFF\x00\x01fake-audio-bytes\xff" * 4
# What the ingress does next: the plan validates the options against a (multilingual) model.
PLANNER = Planner(PipelineConfig(), AsrCard("multilingual", True, ("en", "de", "fr", "ja", "zh")))


async def _parse(request: HttpRequest) -> JSONResponse:
    kind = request.path_params["kind"]
    parse = {"openai": openai_request, "translate": openai_translation_request}.get(kind, native_request)
    try:
        upload = await read_upload(request, MAX_BYTES)
        parsed = parse(upload)
        PLANNER.plan(parsed)
    except RequestError as exc:
        return error_response(exc.status, exc.code, str(exc))
    except PipelineError as exc:
        return error_response(status_of(exc), exc.code, str(exc))
    request = asdict(parsed)
    request["known_speakers"] = [[k.name, len(k.audio)] for k in parsed.known_speakers]  # bytes: their size
    return JSONResponse({"request": request, "audio_bytes": len(upload.audio), "filename": upload.filename})


@pytest.fixture(scope="module")
def client():
    app = Starlette(routes=[Route("/{kind}", _parse, methods=["POST"])])
    with TestClient(app) as c:
        yield c


def _ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def _error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code
    return body["message"]


# Every option is sent both ways. The form path guards a regression: serve/http.py once imported
# pipeline.plan's Request over starlette's, so every form upload was answered 400 invalid_form.
VIA = ["form", "query"]


def send(client, kind: str, fields: dict | list, via: str, audio: bytes = AUDIO):
    """POST `fields` as a multipart form with a file part, or as the query string of a raw body."""
    items = list(fields.items()) if isinstance(fields, dict) else fields
    if via == "form":
        data: dict[str, list] = {}
        for key, value in items:  # repeated fields (name[]) stay repeated
            data.setdefault(key, []).extend(value if isinstance(value, list) else [value])
        return client.post(f"/{kind}", files={"file": ("a.wav", audio, "audio/wav")}, data=data)
    params = [(k, x) for k, v in items for x in (v if isinstance(v, list) else [v])]
    return client.post(f"/{kind}", params=params, content=audio, headers={"content-type": "audio/wav"})


# --- multipart ---------------------------------------------------------------------------------


def test_missing_file_part(client):
    response = client.post("/openai", files={"audio": ("a.wav", AUDIO)}, data={"language": "en"})
    _error(response, 400, "missing_file")


def test_urlencoded_form_without_file(client):
    _error(client.post("/native", data={"language": "en", "model": "whisper-1"}), 400, "missing_file")


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "application/octet-stream", None])
def test_any_non_multipart_body_is_the_audio(client, content_type):
    """curl --data-binary @talk.mp3 labels the body application/x-www-form-urlencoded: it is
    still the audio, with the options in the query string."""
    headers = {"content-type": content_type} if content_type else {}
    body = _ok(client.post("/native?language=en&diarize=true", content=AUDIO, headers=headers))
    assert body["audio_bytes"] == len(AUDIO)
    assert body["request"]["language"] == "en" and body["request"]["diarize"] is True


def test_malformed_multipart_is_invalid_form(client):
    response = client.post(
        "/native",
        content=b"this is not a multipart body",
        headers={"content-type": "multipart/form-data"},  # no boundary
    )
    _error(response, 400, "invalid_form")


# --- fields, sent either way -------------------------------------------------------------------


@pytest.mark.parametrize("via", VIA)
def test_fields_pass_through(client, via):
    fields = {"language": "DE", "prompt": "Names: Ada.", "temperature": "0.2", "response_format": "verbose_json"}
    body = _ok(send(client, "openai", fields, via))
    assert body["audio_bytes"] == len(AUDIO)
    request = body["request"]
    assert request["language"] == "DE", "passed through as given; the planner lower-cases it"
    assert request["initial_prompt"] == "Names: Ada."
    assert request["temperature"] == 0.2
    assert request["response_format"] == "verbose_json"


@pytest.mark.parametrize("via", VIA)
def test_defaults(client, via):
    openai = _ok(send(client, "openai", {}, via))["request"]
    assert openai["response_format"] == "json"
    assert openai["language"] is None
    assert openai["initial_prompt"] is None
    assert openai["temperature"] == 0.0
    assert openai["word_timestamps"] is False
    native = _ok(send(client, "native", {}, via))["request"]
    assert native["response_format"] == "whisperx"
    assert native["align"] is True
    assert native["diarize"] is None, "not said: the planner decides (a speaker count or rttm implies it)"
    assert native["speakers"] == {"num_speakers": None, "min_speakers": None, "max_speakers": None}


@pytest.mark.parametrize("via", VIA)
def test_empty_fields_count_as_absent(client, via):
    fields = {"prompt": "", "temperature": "", "response_format": "", "num_speakers": "", "align": ""}
    request = _ok(send(client, "native", fields, via))["request"]
    assert request["initial_prompt"] is None
    assert request["temperature"] == 0.0
    assert request["response_format"] == "whisperx"
    assert request["speakers"]["num_speakers"] is None
    assert request["align"] is True


def test_raw_body_with_options_in_query(client):
    response = client.post(
        "/native?language=fr&diarize=true&num_speakers=2&response_format=srt&temperature=0.5",
        content=AUDIO,
        headers={"content-type": "application/octet-stream"},
    )
    body = _ok(response)
    assert body["audio_bytes"] == len(AUDIO)
    request = body["request"]
    assert request["language"] == "fr"
    assert request["diarize"] is True
    assert request["speakers"]["num_speakers"] == 2
    assert request["response_format"] == "srt"
    assert request["temperature"] == 0.5


def test_raw_body_without_content_type(client):
    body = _ok(client.post("/openai?response_format=text", content=AUDIO))
    assert body["audio_bytes"] == len(AUDIO)
    assert body["request"]["response_format"] == "text"


@pytest.mark.parametrize("via", VIA)
def test_repeated_field_last_value_wins(client, via):
    body = _ok(send(client, "native", [("language", ["de", "fr"])], via))
    assert body["request"]["language"] == "fr"


# --- OpenAI timestamp granularities ------------------------------------------------------------


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize(
    ("values", "expected"),
    [(["word"], True), (["segment"], False), (["segment", "word"], True), ([], False)],
)
def test_timestamp_granularities(client, via, values, expected):
    fields = {"timestamp_granularities[]": values, "response_format": "verbose_json"}
    assert _ok(send(client, "openai", fields, via))["request"]["word_timestamps"] is expected


def test_timestamp_granularities_without_brackets(client):
    request = _ok(client.post("/openai?timestamp_granularities=word", content=AUDIO))["request"]
    assert request["word_timestamps"] is True


@pytest.mark.parametrize("via", VIA)
def test_bad_timestamp_granularity(client, via):
    message = _error(send(client, "openai", {"timestamp_granularities[]": ["char"]}, via), 422, "invalid_option")
    assert "char" in message


# --- native options ----------------------------------------------------------------------------


@pytest.mark.parametrize("via", VIA)
def test_native_speaker_counts(client, via):
    request = _ok(send(client, "native", {"min_speakers": "2", "max_speakers": "4"}, via))["request"]
    assert request["speakers"] == {"num_speakers": None, "min_speakers": 2, "max_speakers": 4}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("1", True), ("YES", True), ("on", True), ("false", False), ("0", False), ("Off", False)],
)
def test_native_booleans(client, raw, expected):
    request = _ok(send(client, "native", {"align": raw, "diarize": raw}, "query"))["request"]
    assert request["align"] is expected
    assert request["diarize"] is expected


@pytest.mark.parametrize("via", VIA)
def test_native_booleans_in_a_form(client, via):
    request = _ok(send(client, "native", {"align": "0", "diarize": "true"}, via))["request"]
    assert (request["align"], request["diarize"]) == (False, True)


@pytest.mark.parametrize("field", ["align", "diarize"])
def test_native_bad_boolean(client, field):
    message = _error(send(client, "native", {field: "maybe"}, "query"), 400, "invalid_field")
    assert field in message


@pytest.mark.parametrize("field", ["num_speakers", "min_speakers", "max_speakers"])
@pytest.mark.parametrize("raw", ["two", "2.5"])
def test_native_bad_speaker_count(client, field, raw):
    message = _error(send(client, "native", {field: raw}, "query"), 400, "invalid_field")
    assert field in message and "integer" in message


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("kind", ["openai", "native"])
def test_bad_temperature(client, kind, via):
    assert "temperature" in _error(send(client, kind, {"temperature": "hot"}, via), 400, "invalid_field")


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize(
    ("kind", "fmt"),
    [
        ("openai", "mp3"),
        ("openai", "whisperx"),
        ("openai", "tsv"),
        ("openai", "rttm"),
        ("native", "mp3"),
        ("native", "JSON"),
    ],
)
def test_bad_response_format(client, kind, fmt, via):
    response = send(client, kind, {"response_format": fmt}, via)
    assert repr(fmt) in _error(response, 422, "invalid_option")


@pytest.mark.parametrize("fmt", ["whisperx", "json", "verbose_json", "text", "srt", "vtt", "tsv", "rttm"])
def test_native_accepts_every_format(client, fmt):
    assert _ok(send(client, "native", {"response_format": fmt}, "query"))["request"]["response_format"] == fmt


@pytest.mark.parametrize("via", VIA)
def test_upload_filename_is_kept_for_rttm(client, via):
    """rttm's file id comes from the multipart file part's name; a raw body has none."""
    assert _ok(send(client, "native", {"response_format": "rttm"}, via))["filename"] == (
        "a.wav" if via == "form" else None
    )


# --- size limit --------------------------------------------------------------------------------


def test_upload_within_the_envelope_allowance_passes(client):
    data = b"x" * (MAX_BYTES + ENVELOPE)
    assert _ok(client.post("/native", content=data))["audio_bytes"] == len(data)


def test_upload_over_the_limit_declared(client):
    data = b"x" * (MAX_BYTES + ENVELOPE + 1)
    message = _error(client.post("/native", content=data), 413, "upload_too_large")
    assert str(MAX_BYTES) in message


def test_multipart_upload_over_the_limit(client):
    response = client.post("/openai", files={"file": ("a.wav", b"x" * (MAX_BYTES + ENVELOPE + 10))})
    _error(response, 413, "upload_too_large")


def test_upload_over_the_limit_streamed_without_length(client):
    def chunks():
        for _ in range(10):
            yield b"x" * (ENVELOPE // 4)

    response = client.post("/native", content=chunks())
    assert "content-length" not in {k.lower() for k in response.request.headers}
    _error(response, 413, "upload_too_large")


def test_streamed_upload_within_the_limit(client):
    def chunks():
        yield AUDIO
        yield AUDIO

    assert _ok(client.post("/native", content=chunks()))["audio_bytes"] == 2 * len(AUDIO)


# --- OpenAI's other fields and the translations endpoint ---------------------------------------


@pytest.mark.parametrize("via", VIA)
def test_logprobs_are_refused_saying_why(client, via):
    message = _error(send(client, "openai", [("include[]", "logprobs")], via), 400, "unsupported_include")
    assert "per-token" in message
    _error(send(client, "openai", [("include[]", "everything")], via), 400, "invalid_field")


@pytest.mark.parametrize("via", VIA)
def test_translations_take_openais_fields(client, via):
    fields = {"prompt": "Names: Ada.", "temperature": "0.2", "response_format": "verbose_json", "model": "whisper-1"}
    request = _ok(send(client, "translate", fields, via))["request"]
    assert (request["task"], request["language"], request["model"]) == ("translate", None, "whisper-1")
    assert request["initial_prompt"] == "Names: Ada." and request["response_format"] == "verbose_json"
    assert _ok(send(client, "translate", {}, via))["request"]["response_format"] == "json"
    _error(send(client, "translate", {"language": "de"}, via), 400, "invalid_field")
    for field, value in (("stream", "true"), ("include[]", "logprobs"), ("timestamp_granularities[]", "word")):
        assert field in _error(send(client, "translate", [(field, value)], via), 400, "invalid_field")
    assert _ok(send(client, "translate", {"stream": "false"}, via))["request"]["task"] == "translate"


# --- known speakers (OpenAI's known_speaker_names[] / known_speaker_references[]) ----------------


def _data_url(payload: bytes) -> str:
    import base64

    return "data:audio/wav;base64," + base64.b64encode(payload).decode()


@pytest.mark.parametrize("kind", ["openai", "native"])
def test_known_speakers_are_names_paired_with_data_urls(client, kind):
    fields = [
        ("known_speaker_names[]", "Ada"),
        ("known_speaker_references[]", _data_url(b"x" * 10)),
        ("known_speaker_names[]", "Grace"),
        ("known_speaker_references[]", _data_url(b"y" * 20)),
        ("response_format", "diarized_json" if kind == "openai" else "whisperx"),
    ]
    request = _ok(send(client, kind, fields, "form"))["request"]
    assert request["known_speakers"] == [["Ada", 10], ["Grace", 20]]


@pytest.mark.parametrize(
    "fields, field",
    [
        ([("known_speaker_names[]", "Ada")], "known_speaker_references[]"),  # a name without a clip
        ([("known_speaker_names[]", "Ada"), ("known_speaker_references[]", "http://x/a.wav")], "references[0]"),
        ([("known_speaker_names[]", "Ada"), ("known_speaker_references[]", "data:audio/wav;base64,@@")], "[0]"),
        (
            [("known_speaker_names[]", n) for n in "ABCDE"] + [("known_speaker_references[]", _data_url(b"x"))] * 5,
            "at most 4",
        ),
        ([("known_speaker_names[]", "A")] * 2 + [("known_speaker_references[]", _data_url(b"x"))] * 2, "distinct"),
    ],
)
def test_bad_known_speakers_are_400_naming_the_field(client, fields, field):
    message = _error(send(client, "openai", fields, "form"), 400, "invalid_speaker_reference")
    assert field in message


# --- chunking_strategy (auto, or server_vad mapped onto the VAD's options) ------------------------


@pytest.mark.parametrize("via", VIA)
def test_chunking_strategy_auto_or_absent_is_the_configured_vad(client, via):
    for fields in ({}, {"chunking_strategy": "auto"}):
        assert _ok(send(client, "openai", fields, via))["request"]["chunking"] is None


@pytest.mark.parametrize(
    "fields",
    [
        # as the openai SDK sends {"type": "server_vad", ...} in a multipart form
        [("chunking_strategy[type]", "server_vad"), ("chunking_strategy[threshold]", "0.6"),
         ("chunking_strategy[silence_duration_ms]", "800"), ("chunking_strategy[prefix_padding_ms]", "100")],
        # as one JSON object
        [("chunking_strategy", '{"type": "server_vad", "threshold": 0.6, "silence_duration_ms": 800,'
          ' "prefix_padding_ms": 100}')],
    ],
)  # fmt: skip
def test_server_vad_fields_are_parsed_both_ways(client, fields):
    chunking = _ok(send(client, "openai", fields, "form"))["request"]["chunking"]
    assert chunking == {"threshold": 0.6, "silence_duration_ms": 800, "prefix_padding_ms": 100}


def test_server_vad_takes_openais_defaults(client):
    chunking = _ok(send(client, "openai", [("chunking_strategy[type]", "server_vad")], "form"))["request"]["chunking"]
    assert chunking == {"threshold": 0.5, "silence_duration_ms": 200, "prefix_padding_ms": 300}


@pytest.mark.parametrize(
    "fields, named",
    [
        ([("chunking_strategy", "manual")], "auto or a server_vad"),
        ([("chunking_strategy", "{not json")], "JSON"),
        ([("chunking_strategy[type]", "semantic_vad")], "server_vad"),
        ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[threshold]", "1.5")], "threshold"),
        ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[threshold]", "high")], "threshold"),
        ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[silence_duration_ms]", "-5")], "silence"),
        ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[prefix_padding_ms]", "9000")], "prefix"),
        ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[eagerness]", "high")], "eagerness"),
    ],
)
def test_bad_chunking_strategy_is_an_invalid_option_naming_it(client, fields, named):
    message = _error(send(client, "openai", fields, "form"), 422, "invalid_option")  # as a bad language is
    assert "chunking_strategy" in message and named in message


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("kind", ["openai", "native"])
def test_languages_and_keywords_pass_through(client, via, kind):
    fields = [("languages[]", "de"), ("languages[]", "fr"), ("keywords[]", "Ada"), ("keywords[]", "Ray Serve")]
    request = _ok(send(client, kind, fields, via))["request"]
    assert request["languages"] == ["de", "fr"] and request["keywords"] == ["Ada", "Ray Serve"]
