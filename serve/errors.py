"""The one place where errors become HTTP responses: a JSON body in OpenAI's error shape."""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse

from pipeline.errors import (
    AudioDecodeError,
    AudioEmpty,
    AudioTooLarge,
    AudioTooLong,
    InvalidOption,
    InvalidSpeakerReference,
    ModelNotFound,
    MultilingualModelNeeded,
    PipelineError,
    StreamNotAvailable,
    UnknownModel,
    UnsupportedLanguage,
)

log = logging.getLogger(__name__)


class RequestError(Exception):
    """A malformed HTTP request (not about the audio): bad form, missing field, bad auth."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}


class Overloaded(Exception):
    """The service is at capacity; the client should retry after `retry_after_s`."""

    def __init__(self, reason: str = "at capacity", retry_after_s: int | None = None):
        super().__init__(reason)
        self.reason, self.retry_after_s = reason, retry_after_s


class ReplicaUnavailable(Exception):
    """A model replica died and the retries of its work ran out; the service is recovering."""


# Order matters: subclasses before their bases.
_STATUS: list[tuple[type[PipelineError], int]] = [
    (AudioTooLarge, 413),
    (AudioTooLong, 413),
    (AudioEmpty, 400),
    (AudioDecodeError, 415),  # includes AudioTruncated
    (UnknownModel, 400),  # OpenAI answers an unknown model with 400 too
    (MultilingualModelNeeded, 400),  # the configuration lacks it: nothing the audio could change
    (StreamNotAvailable, 400),  # as OpenAI answers stream=true for a format it does not stream
    (InvalidSpeakerReference, 400),  # a bad reference clip or name: the message names the field
    (UnsupportedLanguage, 422),
    (InvalidOption, 422),
    (ModelNotFound, 500),  # at request time: a model the server is configured for is missing
]


def status_of(exc: PipelineError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse(
        {"error": {"message": message, "type": kind, "code": code}}, status_code=status, headers=headers
    )


def response_for(exc: BaseException, retry_after_s: int) -> JSONResponse:
    from ray.serve.exceptions import BackPressureError

    if isinstance(exc, RequestError):
        return error_response(exc.status, exc.code, str(exc), exc.headers)
    if isinstance(exc, PipelineError):
        return error_response(status_of(exc), exc.code, str(exc))
    if isinstance(exc, Overloaded):
        wait = exc.retry_after_s or retry_after_s
        return error_response(
            503,
            "overloaded",
            f"the service is at capacity ({exc.reason}); retry in {wait} s",
            {"Retry-After": str(wait)},
        )
    if isinstance(exc, BackPressureError):
        return error_response(
            503, "overloaded", "the service is at capacity; retry later", {"Retry-After": str(retry_after_s)}
        )
    if isinstance(exc, ReplicaUnavailable):
        return error_response(503, "replica_unavailable", str(exc), {"Retry-After": str(retry_after_s)})
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal_error", f"internal error ({type(exc).__name__})")
