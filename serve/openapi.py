"""The service's OpenAPI 3.1 document (/openapi.json) and an offline Swagger UI (/docs), its
assets served from the swagger-ui-bundle package. Response formats come from the format
registry, so a format added there is described here."""

from __future__ import annotations

import functools
from pathlib import Path

from pipeline.chunking import MAX_PADDING_MS, MAX_SILENCE_MS, ServerVad
from pipeline.diarize.known import MATCH_THRESHOLD, REFERENCE_SECONDS
from pipeline.formats import FORMATS
from pipeline.plan import NATIVE_STREAMED_FORMATS, STREAMED_FORMATS

OPENAI_FORMATS = [f.name for f in FORMATS.values() if f.openai]
NATIVE_FORMATS = list(FORMATS)
TRANSLATION_FORMATS = [name for name in OPENAI_FORMATS if name != "diarized_json"]
# What each error status means here (the body is always `Error`).
ERRORS = {
    "400": "a malformed request: bad field (`invalid_field`), missing `file` (`missing_file`), unknown `model` "
    "(`model_not_found`), a bad reference clip (`invalid_speaker_reference`), a format that cannot stream "
    "(`unsupported_stream`), logprobs (`unsupported_include`), translation without a multilingual model "
    "(`multilingual_model_needed`), empty audio (`audio_empty`), a malformed form (`invalid_form`)",
    "401": "missing or wrong API key (`invalid_api_key`), when the service requires one",
    "413": "upload or decoded audio over the service's limits (`upload_too_large`, `audio_too_large`, "
    "`audio_too_long`)",
    "415": "not audio that ffmpeg can decode (`audio_undecodable`, `audio_truncated`)",
    "422": "an option the plan refuses (`invalid_option`: a speaker count, chunking_strategy, a format) or a "
    "language the model does not know (`unsupported_language`)",
    "503": "at capacity (`overloaded`) or a replica lost (`replica_unavailable`): retry after `Retry-After` seconds",
}


def _string(description: str, **extra) -> dict:
    return {"type": "string", "description": description, **extra}


def _array(items: dict, description: str) -> dict:
    return {"type": "array", "items": items, "description": description}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


SHARED_FIELDS = {
    "model": _string(
        "`whisper-1` or `auto`: the routing rule (English to the English-only model, else the "
        "multilingual one); or a served model's id or configured name (GET /v1/models)"
    ),
    "prompt": _string("text that conditions the decoder (names, spelling)"),
    "temperature": {"type": "number", "minimum": 0, "maximum": 1, "default": 0, "description": "sampling temperature"},
    "cache": {"type": "boolean", "default": True, "description": "answer from and store in the result cache"},
}
LANGUAGE = _string("ISO-639-1 code of the audio's language; absent: identified by the multilingual model")
KNOWN_SPEAKERS = {
    "known_speaker_names[]": _array(
        {"type": "string"}, "names for known speakers, paired in order with known_speaker_references[]"
    ),
    "known_speaker_references[]": _array(
        {"type": "string", "pattern": "^data:[^,]*;base64,"},
        f"one {REFERENCE_SECONDS[0]}-{REFERENCE_SECONDS[1]} s clip of each known speaker alone, as a data URL; a "
        f"diarized speaker whose voice print matches at cosine similarity >= {MATCH_THRESHOLD} takes its name",
    ),
}
SERVER_VAD = {
    "type": "object",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "server_vad"},
        "threshold": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": ServerVad.threshold},
        "silence_duration_ms": {
            "type": "integer", "minimum": 0, "maximum": MAX_SILENCE_MS, "default": ServerVad.silence_duration_ms,
        },
        "prefix_padding_ms": {
            "type": "integer", "minimum": 0, "maximum": MAX_PADDING_MS, "default": ServerVad.prefix_padding_ms,
        },
    },
}  # fmt: skip
HINTS = {
    "languages[]": _array(
        {"type": "string"},
        "the audio is in one of these (ISO-639-1): one is the language; several: the vote chooses among them only",
    ),
    "keywords[]": _array(
        {"type": "string"}, "words and phrases to expect (names, terms), given to the decoder after the prompt"
    ),
}
TRANSCRIPTION_FIELDS = {
    "language": LANGUAGE,
    **HINTS,
    **SHARED_FIELDS,
    "response_format": _string("the response's shape", enum=OPENAI_FORMATS, default="json"),
    "timestamp_granularities[]": _array(
        {"type": "string", "enum": ["word", "segment"]}, "verbose_json: `word` adds words (segments always come)"
    ),
    "stream": {
        "type": "boolean",
        "default": False,
        "description": f"Server-Sent Events (StreamEvent) for response_format {', '.join(STREAMED_FORMATS)}",
    },
    "include[]": _array({"type": "string", "enum": ["logprobs"]}, "logprobs: refused with 400 unsupported_include"),
    "chunking_strategy": {
        "description": "`auto`, or server_vad (sent as one JSON string, or as the SDK's chunking_strategy[...] fields)",
        "anyOf": [
            {"type": "string", "enum": ["auto"]},
            {"type": "string", "contentMediaType": "application/json", "contentSchema": _ref("ServerVad")},
        ],
    },
    **KNOWN_SPEAKERS,
}
TRANSLATION_FIELDS = {
    **SHARED_FIELDS,
    "response_format": _string("the response's shape", enum=TRANSLATION_FORMATS, default="json"),
}
NATIVE_FIELDS = {
    "language": LANGUAGE,
    **HINTS,
    **SHARED_FIELDS,
    "response_format": _string("the response's shape", enum=NATIVE_FORMATS, default="whisperx"),
    "align": {"type": "boolean", "default": True, "description": "word times from the alignment model"},
    "diarize": {"type": "boolean", "description": "speaker turns and speakers (implied by a speaker count, "
                "known speakers, rttm and diarized_json)"},
    "num_speakers": {"type": "integer", "minimum": 1},
    "min_speakers": {"type": "integer", "minimum": 1},
    "max_speakers": {"type": "integer", "minimum": 1},
    "stream": {
        "type": "boolean",
        "default": False,
        "description": f"NDJSON lines (NativeStreamLine) for response_format {', '.join(NATIVE_STREAMED_FORMATS)}",
    },
    "chunking_strategy": TRANSCRIPTION_FIELDS["chunking_strategy"],
    **KNOWN_SPEAKERS,
}  # fmt: skip

SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "code"],
                "properties": {
                    "message": {"type": "string", "description": "what is wrong, naming the field"},
                    "type": {"type": "string", "enum": ["invalid_request_error", "server_error"]},
                    "code": {"type": "string"},
                },
            }
        },
    },
    "ServerVad": SERVER_VAD,
    "Usage": {
        "type": "object",
        "required": ["type", "seconds"],
        "properties": {"type": {"const": "duration"}, "seconds": {"type": "integer"}},
    },
    "Transcription": {
        "type": "object",
        "required": ["text"],
        "properties": {"text": {"type": "string"}, "usage": _ref("Usage")},
    },
    "VerboseTranscription": {
        "type": "object",
        "required": ["task", "language", "duration", "text", "segments"],
        "properties": {
            "task": {"type": "string", "enum": ["transcribe", "translate"]},
            "language": {"type": "string", "description": "the language's English name, as OpenAI writes it"},
            "duration": {"type": "number"},
            "text": {"type": "string"},
            "segments": {"type": "array", "items": _ref("VerboseSegment")},
            "words": {"type": "array", "items": _ref("OpenAiWord")},
            "usage": _ref("Usage"),
        },
    },
    "VerboseSegment": {
        "type": "object",
        "required": ["id", "start", "end", "text"],
        "properties": {
            "id": {"type": "integer"},
            **{k: {"type": "number"} for k in ("start", "end", "avg_logprob", "temperature", "no_speech_prob")},
            "text": {"type": "string"},
            "speaker": {"type": "string"},
        },
    },
    "OpenAiWord": {
        "type": "object",
        "required": ["word", "start", "end"],
        "properties": {"word": {"type": "string"}, "start": {"type": "number"}, "end": {"type": "number"}},
    },
    "DiarizedTranscription": {
        "type": "object",
        "required": ["task", "duration", "text", "segments", "usage"],
        "properties": {
            "task": {"const": "transcribe"},
            "duration": {"type": "number"},
            "text": {"type": "string"},
            "segments": {"type": "array", "items": _ref("DiarizedSegment")},
            "usage": _ref("Usage"),
        },
    },
    "DiarizedSegment": {
        "type": "object",
        "required": ["type", "id", "start", "end", "text", "speaker"],
        "properties": {
            "type": {"const": "transcript.text.segment"},
            "id": {"type": "string", "pattern": "^seg_"},
            "start": {"type": "number"},
            "end": {"type": "number"},
            "text": {"type": "string"},
            "speaker": {"type": "string", "description": "A, B, ... in order of first appearance, or a known name"},
        },
    },
    "StreamEvent": {
        "type": "object",
        "description": "one `data:` line; the stream ends with `data: [DONE]`",
        "required": ["type"],
        "properties": {
            "type": {
                "type": "string",
                "enum": ["transcript.text.delta", "transcript.text.segment", "transcript.text.done", "error"],
            },
            "delta": {"type": "string"},
            "text": {"type": "string"},
            "usage": _ref("Usage"),
            "error": {"type": "object"},
        },
    },
    "Word": {
        "type": "object",
        "required": ["word"],
        "properties": {
            "word": {"type": "string"},
            "start": {"type": "number"},
            "end": {"type": "number"},
            "score": {"type": "number"},
            "speaker": {"type": "string"},
            "interpolated": {"type": "boolean"},
        },
    },
    "Segment": {
        "type": "object",
        "required": ["start", "end", "text", "words"],
        "properties": {
            "start": {"type": "number"},
            "end": {"type": "number"},
            "text": {"type": "string"},
            "words": {"type": "array", "items": _ref("Word")},
            "avg_logprob": {"type": "number"},
            "speaker": {"type": "string"},
        },
    },
    "SpeakerTurn": {
        "type": "object",
        "required": ["start", "end", "speaker"],
        "properties": {"start": {"type": "number"}, "end": {"type": "number"}, "speaker": {"type": "string"}},
    },
    "WhisperXResult": {
        "type": "object",
        "required": ["language", "duration", "text", "segments", "word_segments", "models"],
        "properties": {
            "language": {"type": "string"},
            "duration": {"type": "number"},
            "text": {"type": "string"},
            "segments": {"type": "array", "items": _ref("Segment")},
            "word_segments": {"type": "array", "items": _ref("Word")},
            "models": {"type": "object", "additionalProperties": {"type": "string"}},
            "speaker_turns": {"type": "array", "items": _ref("SpeakerTurn")},
            "service": {"type": "object", "description": "stages run, chunks, batch sizes, seconds per stage"},
        },
    },
    "NativeStreamLine": {
        "type": "object",
        "description": "one NDJSON line: a segment per chunk in audio order, then done (or error); with "
        "alignment or diarization a draft per decoded chunk first, the segments just before done",
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "enum": ["draft", "segment", "done", "error"]},
            "segment": _ref("Segment"),
            "index": {"type": "integer", "description": "draft: the chunk's place in the audio"},
            "start": {"type": "number", "description": "draft: the chunk's start, seconds"},
            "end": {"type": "number", "description": "draft: the chunk's end, seconds"},
            "language": {"type": "string"},
            "duration": {"type": "number"},
            "text": {"type": "string"},
            "models": {"type": "object"},
            "speaker_turns": {"type": "array", "items": _ref("SpeakerTurn")},
            "service": {"type": "object"},
            "error": {"type": "object"},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "object"],
                    "properties": {
                        "id": {"type": "string"},
                        "object": {"const": "model"},
                        "created": {"type": "integer"},
                        "owned_by": {"type": "string"},
                    },
                },
            },
        },
    },
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
}
JSON_SCHEMA_OF = {"json": "Transcription", "verbose_json": "VerboseTranscription",
                  "diarized_json": "DiarizedTranscription", "whisperx": "WhisperXResult"}  # fmt: skip


def _form(fields: dict, with_file: bool = True) -> dict:
    properties = {"file": {"type": "string", "format": "binary", "description": "the audio (any format ffmpeg reads)"}}
    return {
        "type": "object",
        "required": ["file"] if with_file else [],
        "properties": {**properties, **fields},
    }


def _results(formats: list[str], streamed: dict[str, str]) -> dict:
    """200's content types: each format's (JSON formats one schema each), and the stream's."""
    content: dict[str, dict] = {}
    for name in formats:
        fmt = FORMATS[name]
        media = fmt.content_type.split(";")[0]
        if media == "application/json":
            content.setdefault(media, {"schema": {"oneOf": []}})["schema"]["oneOf"].append(_ref(JSON_SCHEMA_OF[name]))
        else:
            content.setdefault(media, {"schema": {"type": "string", "description": f"response_format {name}"}})
    for media, schema in streamed.items():
        content[media] = {"schema": _ref(schema)}
    return {"description": "the transcript in the asked response_format", "content": content}


def _errors(*statuses: str) -> dict:
    return {
        status: {"description": ERRORS[status], "content": {"application/json": {"schema": _ref("Error")}}}
        for status in statuses
    }


def _post(summary: str, fields: dict, formats: list[str], streamed: dict[str, str], raw_body: bool = False) -> dict:
    content = {"multipart/form-data": {"schema": _form(fields)}}
    operation = {"summary": summary, "security": [{"bearer": []}, {}]}
    if raw_body:  # the audio as the body, the fields in the query string
        content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
        operation["parameters"] = [
            {"name": name, "in": "query", "required": False, "schema": schema} for name, schema in fields.items()
        ]
    return {
        "post": {
            **operation,
            "requestBody": {"required": True, "content": content},
            "responses": {"200": _results(formats, streamed), **_errors("400", "401", "413", "415", "422", "503")},
        }
    }


@functools.lru_cache(maxsize=1)
def document() -> dict:
    """The OpenAPI document: every route the Ingress answers (serve/ingress.py ROUTES)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "whisperx-serve",
            "version": "0.1.0",
            "description": "WhisperX (ASR, word alignment, diarization) on Ray Serve: OpenAI's audio API and a "
            "native endpoint with WhisperX's full result.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "WXS_API_KEY"}},
        },
        "paths": {
            "/v1/audio/transcriptions": _post(
                "OpenAI's transcriptions",
                TRANSCRIPTION_FIELDS,
                OPENAI_FORMATS,
                {"text/event-stream": "StreamEvent"},
            ),
            "/v1/audio/translations": _post(
                "OpenAI's translations: the text in English, on the multilingual model",
                TRANSLATION_FIELDS,
                TRANSLATION_FORMATS,
                {},
            ),
            "/v1/transcribe": _post(
                "WhisperX's full result (multipart, or the audio as the body with the fields in the query string)",
                NATIVE_FIELDS,
                NATIVE_FORMATS,
                {"application/x-ndjson": "NativeStreamLine"},
                raw_body=True,
            ),
            "/v1/models": {
                "get": {
                    "summary": "the ASR models served, and whisper-1",
                    "security": [{"bearer": []}, {}],
                    "responses": {
                        "200": {
                            "description": "OpenAI's model list",
                            "content": {"application/json": {"schema": _ref("ModelList")}},
                        },
                        **_errors("401"),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "ready once a Transcriber replica with its model answers; admission and replica state",
                    "responses": {
                        "200": {"description": "ready", "content": {"application/json": {"schema": _ref("Health")}}},
                        "503": {
                            "description": "models not ready (`not_ready`)",
                            "content": {"application/json": {"schema": _ref("Error")}},
                        },
                    },
                }
            },
            "/openapi.json": {
                "get": {"summary": "this document", "responses": {"200": {"description": "OpenAPI 3.1"}}}
            },
            "/docs": {"get": {"summary": "Swagger UI, offline", "responses": {"200": {"description": "HTML"}}}},
            "/": {
                "get": {
                    "summary": "the page for people: upload or speak, read, play, rename speakers, download",
                    "responses": {"200": {"description": "HTML (its files under /page/)"}},
                }
            },
        },
    }


# --- /docs: Swagger UI from the swagger-ui-bundle package ------------------------------------------

DOCS_ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}
DOCS_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>whisperx-serve API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"><link rel="icon" href="/docs/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script><script src="/docs/swagger-ui-standalone-preset.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout"});</script>
</body></html>
"""


@functools.lru_cache(maxsize=len(DOCS_ASSETS))
def docs_asset(name: str) -> tuple[bytes, str] | None:
    """One of Swagger UI's files and its media type; None for any other name (no paths from clients)."""
    if name not in DOCS_ASSETS:
        return None
    from swagger_ui_bundle import swagger_ui_path

    return (Path(swagger_ui_path) / name).read_bytes(), DOCS_ASSETS[name]
