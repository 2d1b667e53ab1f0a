"""OpenAI's Realtime transcription sessions over a WebSocket (`/v1/realtime?intent=transcription`).

The client sends pcm16 audio at 24 kHz (`input_audio_buffer.append`, base64) and commits
utterances (`input_audio_buffer.commit`); each committed utterance is planned in
`pipeline/live.py` and transcribed by the executor like an uploaded file (its chunks in the
Transcriber's batches with everyone else's), and answered with
`conversation.item.input_audio_transcription.completed`, in commit order. Set-up comes as
`session.update` (`session.audio.input`) or the older `transcription_session.update`
(`input_audio_format`, `input_audio_transcription`). A malformed message is answered by an
`error` event naming the problem; the session lives on.

Turn detection is the client's here (`turn_detection: null`): server VAD is not served yet, and
asking for it is an `error` event that says so.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import uuid
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from starlette.websockets import WebSocket, WebSocketDisconnect

from pipeline.live import LiveSession, LiveSettings
from pipeline.plan import Request

RATE = 24000  # OpenAI's pcm16: 24 kHz, mono, little-endian
MIN_COMMIT_S = 0.1  # OpenAI refuses a commit of less than 100 ms
MAX_BUFFER_S = 600.0  # one utterance's audio; more is an error, not memory
MAX_MESSAGE_BYTES = 15 * 1024 * 1024  # OpenAI's own bound on one event

# (wav bytes, request) -> (transcript text, language): the executor's means
Transcribe = Callable[[bytes, Request], Awaitable[tuple[str, str]]]


class EventError(Exception):
    """A client event that cannot be taken: answered by an `error` event, the session lives on."""

    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.code, self.param = code, param


@dataclass(frozen=True)
class SessionConfig:
    settings: LiveSettings = LiveSettings()
    noise_reduction: dict | None = None

    def describe(self, legacy: bool = False) -> dict:
        """The effective configuration, in the shape the client used."""
        transcription = {
            "model": self.settings.model or "whisper-1",
            "language": self.settings.language,
            "prompt": self.settings.prompt,
        }
        if legacy:
            return {
                "object": "realtime.transcription_session",
                "input_audio_format": "pcm16",
                "input_audio_transcription": transcription,
                "turn_detection": None,
                "input_audio_noise_reduction": self.noise_reduction,
            }
        audio_input = {
            "format": {"type": "audio/pcm", "rate": RATE},
            "transcription": transcription,
            "turn_detection": None,
            "noise_reduction": self.noise_reduction,
        }
        return {"type": "transcription", "object": "realtime.session", "audio": {"input": audio_input}}


def configure(config: SessionConfig, session: dict, legacy: bool) -> SessionConfig:
    """The session config after a `session.update` (legacy: `transcription_session.update`)."""
    if not isinstance(session, dict):
        raise EventError("invalid_value", "session must be an object", "session")
    if legacy:
        audio_format, transcription = session.get("input_audio_format"), session.get("input_audio_transcription")
        turn_detection, noise = session.get("turn_detection", None), session.get("input_audio_noise_reduction")
        where = "session"
        if audio_format not in (None, "pcm16"):
            raise EventError("invalid_value", f"input_audio_format {audio_format!r}: only pcm16 is served", where)
    else:
        if session.get("type", "transcription") != "transcription":
            raise EventError("invalid_value", "session.type must be 'transcription' here", "session.type")
        audio_input = (session.get("audio") or {}).get("input") or {}
        where = "session.audio.input"
        audio_format = audio_input.get("format")
        pcm24 = ("audio/pcm", RATE)
        if audio_format is not None and (audio_format.get("type"), audio_format.get("rate", RATE)) != pcm24:
            raise EventError("invalid_value", f"format {audio_format}: only audio/pcm at {RATE} Hz is served", where)
        transcription, noise = audio_input.get("transcription"), audio_input.get("noise_reduction")
        turn_detection = audio_input.get("turn_detection", None)
    if turn_detection is not None:
        raise EventError(
            "unsupported_turn_detection",
            "server-side turn detection is not served yet: set turn_detection to null and commit each "
            "utterance with input_audio_buffer.commit",
            f"{where}.turn_detection",
        )
    settings = config.settings
    if transcription is not None:
        if not isinstance(transcription, dict):
            raise EventError("invalid_value", "transcription must be an object", f"{where}.transcription")
        settings = LiveSettings(
            model=transcription.get("model") or settings.model,
            language=transcription.get("language") or None,
            prompt=transcription.get("prompt") or "",
        )
    return replace(config, settings=settings, noise_reduction=noise if noise is not None else config.noise_reduction)


def wav_bytes(pcm16: bytes) -> bytes:
    """The committed audio as a WAV file, so it is decoded exactly as an upload is."""
    out = io.BytesIO()
    with wave.open(out, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes(pcm16)
    return out.getvalue()


class RealtimeSession:
    """One WebSocket client: its audio buffer, its utterances in commit order."""

    def __init__(self, ws: WebSocket, transcribe: Transcribe, describe_error: Callable[[BaseException], dict]):
        self.ws, self.transcribe, self.describe_error = ws, transcribe, describe_error
        self.config = SessionConfig()
        self.live = LiveSession()
        self.buffer = bytearray()
        self.previous_item: str | None = None
        self.utterances: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self.send_lock = asyncio.Lock()
        self.client_event_id: str | None = None  # the event an error answers, when it had an id

    async def run(self) -> None:
        offered = [p.strip() for p in self.ws.headers.get("sec-websocket-protocol", "").split(",")]
        await self.ws.accept(subprotocol="realtime" if "realtime" in offered else None)
        await self.send({"type": "session.created", "session": self.config.describe()})
        worker = asyncio.create_task(self._transcribe_in_order())
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                raw = message.get("text") if message.get("text") is not None else message.get("bytes")
                try:
                    await self.handle(raw)
                except EventError as exc:
                    await self.send_error(exc.code, str(exc), exc.param, self.client_event_id)
        except WebSocketDisconnect:
            return
        finally:
            worker.cancel()  # a vanished client frees its work at once

    async def handle(self, raw: str | bytes | None) -> None:
        self.client_event_id = None
        if raw is None or len(raw) > MAX_MESSAGE_BYTES:
            raise EventError("invalid_event", f"an event is one JSON text message of at most {MAX_MESSAGE_BYTES} bytes")
        try:
            event = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EventError("invalid_json", f"not JSON: {exc}") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise EventError("invalid_event", "an event is a JSON object with a string 'type'", "type")
        self.client_event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        kind = event["type"]
        if kind in ("session.update", "transcription_session.update"):
            legacy = kind == "transcription_session.update"
            self.config = configure(self.config, event.get("session"), legacy)
            self.live.settings = self.config.settings
            answer = "transcription_session.updated" if legacy else "session.updated"
            await self.send({"type": answer, "session": self.config.describe(legacy)})
        elif kind == "input_audio_buffer.append":
            self.append(event.get("audio"))
        elif kind == "input_audio_buffer.commit":
            await self.commit()
        elif kind == "input_audio_buffer.clear":
            self.buffer.clear()
            await self.send({"type": "input_audio_buffer.cleared"})
        else:
            raise EventError("invalid_event_type", f"unknown event type {kind!r}", "type")

    def append(self, audio) -> None:
        if not isinstance(audio, str):
            raise EventError("invalid_value", "audio must be a base64 string of pcm16 samples", "audio")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise EventError("invalid_base64", "audio is not valid base64", "audio") from None
        if len(pcm) % 2:
            raise EventError("invalid_audio", "pcm16 audio has an even number of bytes", "audio")
        if (len(self.buffer) + len(pcm)) / 2 / RATE > MAX_BUFFER_S:
            raise EventError(
                "input_audio_buffer_too_large",
                f"an utterance holds at most {MAX_BUFFER_S:.0f} s: commit before appending more",
                "audio",
            )
        self.buffer += pcm

    async def commit(self) -> None:
        seconds = len(self.buffer) / 2 / RATE
        if seconds < MIN_COMMIT_S:
            raise EventError(
                "input_audio_buffer_commit_empty",
                f"buffer too small: {seconds * 1000:.0f} ms of audio, at least {MIN_COMMIT_S * 1000:.0f} ms",
            )
        item = f"item_{uuid.uuid4().hex[:20]}"
        pcm, self.buffer = bytes(self.buffer), bytearray()
        committed = {"type": "input_audio_buffer.committed", "previous_item_id": self.previous_item, "item_id": item}
        await self.send(committed)
        self.previous_item = item
        self.utterances.put_nowait((item, pcm))

    async def _transcribe_in_order(self) -> None:
        """One utterance at a time: the next one's prompt is the text before it."""
        while True:
            item, pcm = await self.utterances.get()
            try:
                text, language = await self.transcribe(wav_bytes(pcm), self.live.request())
            except Exception as exc:  # noqa: BLE001 - the client hears of it; the session lives on (cancelling is no Exception)
                error = self.describe_error(exc)
                await self.send(
                    {
                        "type": "conversation.item.input_audio_transcription.failed",
                        "item_id": item,
                        "content_index": 0,
                        "error": {"type": "transcription_error", "param": None, **error},
                    }
                )
                continue
            self.live.completed(text, language)
            await self.send(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item,
                    "content_index": 0,
                    "transcript": text,
                    "usage": {"type": "duration", "seconds": round(len(pcm) / 2 / RATE, 3)},
                }
            )

    async def send(self, event: dict) -> None:
        async with self.send_lock:
            await self.ws.send_text(json.dumps({"event_id": f"event_{uuid.uuid4().hex[:20]}", **event}))

    async def send_error(self, code: str, message: str, param: str | None, event_id: str | None) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message, "param": param}
        await self.send({"type": "error", "error": {**error, "event_id": event_id}})
