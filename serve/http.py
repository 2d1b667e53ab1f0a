"""HTTP request parsing: size-limited body, multipart form or raw audio, typed options."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.requests import Request as HttpRequest

from pipeline.chunking import ServerVad, server_vad
from pipeline.diarize import SpeakerCount
from pipeline.diarize.known import KnownSpeaker, check_names
from pipeline.errors import InvalidOption, InvalidSpeakerReference
from pipeline.plan import Request
from serve.errors import RequestError

DEFAULTS = Request()  # a field left out of the form takes the Request's own default
# A urlencoded form (`a=1&b=2`) rather than audio bytes that curl labelled as one.
_FORM_TEXT = re.compile(rb"[\w.\[\]%+-]+=[^&\s]*(&[\w.\[\]%+-]+=[^&\s]*)*")


@dataclass(frozen=True)
class Upload:
    audio: bytes
    fields: dict[str, list[str]]
    filename: str | None = None  # the multipart file part's, as the client sent it

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None


async def read_body(request: HttpRequest, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise RequestError(413, "upload_too_large", f"the upload is {declared} bytes; the limit is {max_bytes}")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes + 64 * 1024:  # allowance for the multipart envelope
            raise RequestError(413, "upload_too_large", f"the upload is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_upload(request: HttpRequest, max_bytes: int) -> Upload:
    """A multipart form with a `file` part (OpenAI's shape), or else the raw audio as the body
    with options in the query string. Any content type but multipart means raw audio: curl
    --data-binary labels it application/x-www-form-urlencoded, and a form without a file
    part could not carry audio anyway."""
    body = await read_body(request, max_bytes)
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        if content_type.lower().startswith("application/x-www-form-urlencoded") and _FORM_TEXT.fullmatch(body):
            raise RequestError(
                400, "missing_file", "a form without a `file` part: send the audio as multipart `file`, or as the body"
            )
        fields = {k: request.query_params.getlist(k) for k in request.query_params.keys()}
        return Upload(audio=body, fields=fields)

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    form_request = HttpRequest(request.scope, replay)
    try:
        form = await form_request.form(max_files=1, max_fields=64)
    except Exception as exc:  # starlette raises several types for malformed multipart bodies
        raise RequestError(400, "invalid_form", f"cannot parse the multipart form: {exc}") from exc
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise RequestError(400, "missing_file", "the form needs a `file` part holding the audio")
        audio = await upload.read()
        fields: dict[str, list[str]] = {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields.setdefault(key, []).append(value)
        return Upload(audio=audio, fields=fields, filename=upload.filename)
    finally:
        await form.close()


def _number(upload: Upload, name: str, kind: type, default=None):
    """A numeric form field (`kind` is float or int); absent or empty -> default."""
    raw = upload.get(name)
    if raw in (None, ""):
        return default
    try:
        return kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise RequestError(400, "invalid_field", f"{name} must be {noun}, not {raw!r}") from None


def _bool(upload: Upload, name: str, default: bool | None) -> bool | None:
    raw = upload.get(name)
    if raw in (None, ""):
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise RequestError(400, "invalid_field", f"{name} must be true or false, not {raw!r}")


def _listed(upload: Upload, name: str) -> list[str]:
    """An array field as the SDK sends it (`name[]`) or repeated plainly (`name`)."""
    return upload.fields.get(f"{name}[]", []) + upload.fields.get(name, [])


def data_url_bytes(index: int, url: str) -> bytes:
    """A reference clip sent as a data URL (`data:audio/wav;base64,...`), as OpenAI takes them."""
    header, comma, payload = url.partition(",")
    if not (header.startswith("data:") and header.endswith(";base64") and comma):
        raise InvalidSpeakerReference(
            f"known_speaker_references[{index}] must be a base64 data URL (data:audio/wav;base64,...)"
        )
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise InvalidSpeakerReference(f"known_speaker_references[{index}]: its base64 is malformed") from None


def known_speakers(upload: Upload) -> tuple[KnownSpeaker, ...]:
    """OpenAI's `known_speaker_names[]` with `known_speaker_references[]` (the plan checks the pairs)."""
    names, urls = _listed(upload, "known_speaker_names"), _listed(upload, "known_speaker_references")
    if len(names) != len(urls):
        check_names(names, len(urls))  # the mismatch, named
    return tuple(KnownSpeaker(name.strip(), data_url_bytes(i, url)) for i, (name, url) in enumerate(zip(names, urls)))


def chunking_strategy(upload: Upload) -> ServerVad | None:
    """OpenAI's `chunking_strategy`: `auto` (or absent), or server_vad as the SDK sends it
    (`chunking_strategy[type]=server_vad`, `chunking_strategy[threshold]=0.6`, ...) or as one
    JSON object (`{"type": "server_vad", "threshold": 0.6}`)."""
    prefix = "chunking_strategy["
    nested = {k[len(prefix) : -1]: upload.get(k) for k in upload.fields if k.startswith(prefix) and k.endswith("]")}
    raw = (upload.get("chunking_strategy") or "").strip()
    if raw.startswith("{"):
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise InvalidOption("chunking_strategy is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise InvalidOption("chunking_strategy must be auto or a server_vad object")
        nested = {str(k): v for k, v in parsed.items()}
    elif raw not in ("", "auto"):
        raise InvalidOption(f"chunking_strategy must be auto or a server_vad object, not {raw!r}")
    if not nested:
        return None
    if nested.get("type") != "server_vad":
        raise InvalidOption(f"chunking_strategy type must be server_vad, not {nested.get('type')!r}")
    return server_vad(nested)


def _common(upload: Upload) -> dict:
    """The fields both endpoints take."""
    return {
        "chunking": chunking_strategy(upload),
        "language": upload.get("language"),
        "known_speakers": known_speakers(upload),
        "model": upload.get("model"),  # the plan routes it (unknown: 400 listing what is served)
        "initial_prompt": upload.get("prompt") or None,
        "temperature": _number(upload, "temperature", float, DEFAULTS.temperature),
    }


def _hints(upload: Upload) -> dict:
    """OpenAI's `languages[]` (the audio is in one of these) and `keywords[]` (words to expect)."""
    return {"languages": tuple(_listed(upload, "languages")), "keywords": tuple(_listed(upload, "keywords"))}


def cache_allowed(upload: Upload, headers) -> bool:
    """A request may be answered from, and stored in, the result cache unless it sends
    `cache=false` or `Cache-Control: no-cache` / `no-store`."""
    control = headers.get("cache-control", "").lower()
    return _bool(upload, "cache", True) and "no-cache" not in control and "no-store" not in control


def _refuse_logprobs(upload: Upload) -> None:
    included = _listed(upload, "include")
    if "logprobs" in included:
        raise RequestError(
            400,
            "unsupported_include",
            "include[]=logprobs is not available: the CTranslate2 Whisper engine returns one score per "
            "sequence, not per-token log probabilities",
        )
    unknown = [value for value in included if value != "logprobs"]
    if unknown:
        raise RequestError(400, "invalid_field", f"include[] may only be logprobs, not {unknown[0]!r}")


def openai_translation_request(upload: Upload) -> Request:
    """OpenAI's /v1/audio/translations fields: file, model, prompt, response_format, temperature
    (no language: the source's is identified; the text comes back in English)."""
    for name, why in (
        ("language", "the audio's is identified"),
        ("stream", "OpenAI's translations do not stream"),
        ("include[]", "they return text only"),
        ("timestamp_granularities[]", "they return text only"),
        ("known_speaker_names[]", "they return text only"),
        ("known_speaker_references[]", "they return text only"),
    ):
        if upload.get(name) not in (None, "", "false"):
            raise RequestError(400, "invalid_field", f"translations take no {name}: {why}")
    return Request(
        **{**_common(upload), "language": None},
        task="translate",
        response_format=upload.get("response_format") or "json",
        word_timestamps=False,
        openai=True,
    )


def openai_request(upload: Upload) -> Request:
    """OpenAI's /v1/audio/transcriptions fields."""
    _refuse_logprobs(upload)
    granularities = _listed(upload, "timestamp_granularities")
    for g in granularities:
        if g not in ("word", "segment"):
            raise InvalidOption(f"timestamp_granularities[] must be word or segment, not {g!r}")
    return Request(
        **_common(upload),
        **_hints(upload),
        response_format=upload.get("response_format") or "json",
        stream=bool(_bool(upload, "stream", False)),
        word_timestamps="word" in granularities,
        openai=True,  # the plan allows OpenAI's formats only
    )


def native_request(upload: Upload) -> Request:
    """The native endpoint: WhisperX's options."""
    speakers = SpeakerCount(
        _number(upload, "num_speakers", int), _number(upload, "min_speakers", int), _number(upload, "max_speakers", int)
    )
    return Request(
        **_common(upload),
        **_hints(upload),
        align=_bool(upload, "align", DEFAULTS.align),
        diarize=_bool(upload, "diarize", DEFAULTS.diarize),
        speakers=speakers,
        response_format=upload.get("response_format") or DEFAULTS.response_format,
        stream=bool(_bool(upload, "stream", False)),  # NDJSON (serve/streaming.py NativeLines)
    )
