"""OpenAI's Realtime transcription sessions over a WebSocket (`/v1/realtime?intent=transcription`).

The client sends pcm16 audio at 24 kHz (`input_audio_buffer.append`, base64). Turns are found
by the server VAD (`turn_detection: {type: "server_vad"}`, OpenAI's default): the project's
segmentation model scores the stream as it arrives (pipeline/turns.py decides), announced by
`input_audio_buffer.speech_started` / `.speech_stopped` and committed at once; with
`turn_detection: null` the client commits (`input_audio_buffer.commit`). Each committed utterance
is planned in `pipeline/live.py` and transcribed by the executor like an uploaded file (its
chunks in the Transcriber's batches with everyone else's), and answered with
`conversation.item.input_audio_transcription.delta` (the whole text) and `.completed`, in commit
order. Set-up comes as `session.update` (`session.audio.input`) or the older
`transcription_session.update` (`input_audio_format`, `input_audio_transcription`). A malformed
message is answered by an `error` event naming the problem; the session lives on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from pipeline.live import LiveSession, LiveSettings, wav_bytes
from pipeline.plan import Request
from pipeline.turns import FrameGrid, TurnDetection, TurnEnded, TurnStarted, TurnTracker

RATE = 24000  # OpenAI's pcm16: 24 kHz, mono, little-endian
MIN_COMMIT_S = 0.1  # OpenAI refuses a commit of less than 100 ms
DRAIN_S = 120.0  # a session that ends (expired, idle) answers its committed utterances within this

# (wav bytes, request) -> (transcript text, language): the executor's means
Transcribe = Callable[[bytes, Request], Awaitable[tuple[str, str]]]
_ABSENT = object()  # a key the client left out (None is its null)


@dataclass(frozen=True)
class LiveLimits:
    """One session's bounds: ServiceArgs' live_* fields (their defaults are there)."""

    max_session_s: float
    idle_timeout_s: float
    max_buffer_s: float  # audio appended and not committed
    max_message_bytes: int


@dataclass(frozen=True)
class LiveVad:
    """The segmentation model as a session sees it: its frame grid and a window's scores."""

    grid: FrameGrid
    score: Callable[[np.ndarray], Awaitable[np.ndarray]]


class EventError(Exception):
    """A client event that cannot be taken: answered by an `error` event, the session lives on."""

    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.code, self.param = code, param


@dataclass(frozen=True)
class SessionConfig:
    settings: LiveSettings = LiveSettings()
    noise_reduction: dict | None = None
    turn_detection: TurnDetection | None = TurnDetection()  # None: the client commits

    def describe(self, legacy: bool = False) -> dict:
        """The effective configuration, in the shape the client used."""
        transcription = {
            "model": self.settings.model or "whisper-1",
            "language": self.settings.language,
            "prompt": self.settings.prompt,
        }
        turns = self.turn_detection
        turn_detection = None if turns is None else {"type": "server_vad", **asdict(turns)}
        if legacy:
            return {
                "object": "realtime.transcription_session",
                "input_audio_format": "pcm16",
                "input_audio_transcription": transcription,
                "turn_detection": turn_detection,
                "input_audio_noise_reduction": self.noise_reduction,
            }
        audio_input = {
            "format": {"type": "audio/pcm", "rate": RATE},
            "transcription": transcription,
            "turn_detection": turn_detection,
            "noise_reduction": self.noise_reduction,
        }
        return {"type": "transcription", "object": "realtime.session", "audio": {"input": audio_input}}


def configure(config: SessionConfig, session: dict, legacy: bool) -> SessionConfig:
    """The session config after a `session.update` (legacy: `transcription_session.update`)."""
    if not isinstance(session, dict):
        raise EventError("invalid_value", "session must be an object", "session")
    if legacy:
        audio_format, transcription = session.get("input_audio_format"), session.get("input_audio_transcription")
        turn_detection, noise = session.get("turn_detection", _ABSENT), session.get("input_audio_noise_reduction")
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
        turn_detection = audio_input.get("turn_detection", _ABSENT)
    turns = config.turn_detection if turn_detection is _ABSENT else turn_detection_of(turn_detection, where)
    settings = config.settings
    if transcription is not None:
        if not isinstance(transcription, dict):
            raise EventError("invalid_value", "transcription must be an object", f"{where}.transcription")
        settings = LiveSettings(
            model=transcription.get("model") or settings.model,
            language=transcription.get("language") or None,
            prompt=transcription.get("prompt") or "",
        )
    noise = noise if noise is not None else config.noise_reduction
    return replace(config, settings=settings, noise_reduction=noise, turn_detection=turns)


def turn_detection_of(asked, where: str) -> TurnDetection | None:
    """A client's turn_detection: null (the client commits) or server_vad, OpenAI's defaults for
    what it leaves out."""
    if asked is None:
        return None
    param = f"{where}.turn_detection"
    if not isinstance(asked, dict):
        raise EventError("invalid_value", "turn_detection is null or an object", param)
    kind = asked.get("type", "server_vad")
    if kind != "server_vad":
        raise EventError(
            "unsupported_turn_detection",
            f"turn_detection type {kind!r} is not served: use server_vad, or null to commit each utterance",
            f"{param}.type",
        )
    if asked.get("idle_timeout_ms") is not None:
        raise EventError("unsupported_turn_detection", "idle_timeout_ms is not served: leave it null", param)
    fields = {}
    for name, kind in (("threshold", float), ("prefix_padding_ms", int), ("silence_duration_ms", int)):
        value = asked.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
            raise EventError("invalid_value", f"{name} must be a {'number' if kind is float else 'whole number'}",
                             f"{param}.{name}")  # fmt: skip
        fields[name] = kind(value)
    try:
        return TurnDetection(**fields)
    except ValueError as exc:
        raise EventError("invalid_value", f"turn_detection: {exc}", param) from None


class RealtimeSession:
    """One WebSocket client: its audio buffer, its turns, its utterances in commit order."""

    def __init__(
        self,
        ws: WebSocket,
        transcribe: Transcribe,
        describe_error: Callable[[BaseException], dict],
        server_vad: LiveVad,
        limits: LiveLimits,
    ):
        self.ws, self.transcribe, self.describe_error = ws, transcribe, describe_error
        self.server_vad, self.limits = server_vad, limits
        self.config = SessionConfig()
        self.live = LiveSession()
        self.buffer = bytearray()  # the audio not committed yet, from buffer_start on
        self.buffer_start = 0  # stream samples (24 kHz) before the buffer
        self.received = 0  # stream samples appended in all
        self.tracker: TurnTracker | None = None  # the server VAD's; None: the client commits
        self.turn_item: str | None = None  # the item of the turn whose speech started
        self.turn_start = 0.0  # and where its audio starts (stream seconds)
        self.previous_item: str | None = None
        self.utterances: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue()  # (item, pcm, whole_speech)
        self.new_audio = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.commit_lock = asyncio.Lock()  # one commit at a time: committed events in queue order
        self.client_event_id: str | None = None  # the event an error answers, when it had an id
        self.unanswered = 0  # utterances committed and not yet answered
        self.answered = asyncio.Event()  # set while none is unanswered
        self.answered.set()
        self.last_event = 0.0  # loop time of the client's last event
        self.ending = False  # expired or idle: what comes in is no longer taken
        self._track_turns()

    async def run(self) -> None:
        offered = [p.strip() for p in self.ws.headers.get("sec-websocket-protocol", "").split(",")]
        await self.ws.accept(subprotocol="realtime" if "realtime" in offered else None)
        await self.send({"type": "session.created", "session": self.config.describe()})
        self.last_event = asyncio.get_running_loop().time()
        workers = [self._transcribe_in_order(), self._detect_turns(), self._end_when_due()]
        tasks = [asyncio.create_task(worker) for worker in workers]
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if self.ending:
                    continue
                self.last_event = asyncio.get_running_loop().time()
                raw = message.get("text") if message.get("text") is not None else message.get("bytes")
                try:
                    await self.handle(raw)
                except EventError as exc:
                    await self.send_error(exc.code, str(exc), exc.param, self.client_event_id)
        except WebSocketDisconnect:
            return
        finally:
            for task in tasks:
                task.cancel()  # a vanished client frees its work at once

    async def _end_when_due(self) -> None:
        """End the session at its length limit or after its idle time: the committed utterances
        (and an open server-VAD turn, committed now) are answered first, then an `error` event
        says why and the socket closes normally."""
        loop, limits = asyncio.get_running_loop(), self.limits
        expires = loop.time() + limits.max_session_s
        while (due := min(expires, self.last_event + limits.idle_timeout_s)) > loop.time():
            await asyncio.sleep(due - loop.time())
        self.ending = True
        if loop.time() >= expires:
            code, why = "session_expired", f"a session lasts at most {limits.max_session_s:g} s (live_max_session_s)"
        else:
            code, why = "session_idle_timeout", f"no event for {limits.idle_timeout_s:g} s (live_idle_timeout_s)"
        if self.turn_item is not None and len(self.buffer) / 2 / RATE >= MIN_COMMIT_S:
            await self.commit()
        try:
            await asyncio.wait_for(self.answered.wait(), DRAIN_S)
        except TimeoutError:
            pass
        await self.send_error(code, why, None, None)
        await self.ws.close(code=1000, reason=code)

    async def handle(self, raw: str | bytes | None) -> None:
        self.client_event_id = None
        if raw is None or len(raw) > self.limits.max_message_bytes:
            raise EventError(
                "invalid_event",
                f"an event is one JSON text message of at most {self.limits.max_message_bytes} bytes "
                "(live_max_message_bytes)",
            )
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
            before = self.config.turn_detection
            self.config = configure(self.config, event.get("session"), legacy)
            self.live.settings = self.config.settings
            if self.config.turn_detection != before:
                self._track_turns()
            answer = "transcription_session.updated" if legacy else "session.updated"
            await self.send({"type": answer, "session": self.config.describe(legacy)})
        elif kind == "input_audio_buffer.append":
            self.append(event.get("audio"))
        elif kind == "input_audio_buffer.commit":
            await self.commit()
        elif kind == "input_audio_buffer.clear":
            self._drop_until(self.received)
            if self.tracker is not None:
                self.tracker.reset(self.received / RATE)
            self.turn_item = None
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
        if (len(self.buffer) + len(pcm)) / 2 / RATE > self.limits.max_buffer_s:
            raise EventError(
                "input_audio_buffer_too_large",
                f"at most {self.limits.max_buffer_s:g} s of audio wait uncommitted (live_max_buffer_s): "
                "commit before appending more",
                "audio",
            )
        self.buffer += pcm
        self.received += len(pcm) // 2
        if self.tracker is not None:
            self.tracker.feed(pcm)
            self.new_audio.set()

    async def commit(self) -> None:
        """The client's commit: the whole buffer, as the open turn's item if speech started."""
        seconds = len(self.buffer) / 2 / RATE
        if seconds < MIN_COMMIT_S:
            raise EventError(
                "input_audio_buffer_commit_empty",
                f"buffer too small: {seconds * 1000:.0f} ms of audio, at least {MIN_COMMIT_S * 1000:.0f} ms",
            )
        item, self.turn_item = self.turn_item or _new_item(), None
        if self.tracker is not None:
            self.tracker.reset(self.received / RATE)
        await self._commit(item, self._drop_until(self.received), [], whole_speech=False)

    async def _commit(self, item: str, pcm: bytes, before: list[dict], whole_speech: bool) -> None:
        """Send `before` and `committed`, then queue the utterance (a commit at a time, so the
        queue holds the utterances in the order their `committed` events went out)."""
        async with self.commit_lock:
            previous, self.previous_item = self.previous_item, item
            committed = {"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item}
            for event in [*before, committed]:
                await self.send(event)
            self.utterances.put_nowait((item, pcm, whole_speech))
            self.unanswered += 1
            self.answered.clear()

    def _slice(self, start: int, end: int) -> bytes:
        """A copy of the buffer's audio of stream samples [start, end)."""
        lo, hi = (max(0, min(len(self.buffer), 2 * (s - self.buffer_start))) for s in (start, end))
        return bytes(self.buffer[lo:hi])

    def _drop_until(self, sample: int) -> bytes:
        """Take the buffer's audio before stream sample `sample` out of it."""
        cut = max(0, min(len(self.buffer), 2 * (sample - self.buffer_start)))
        taken = bytes(self.buffer[:cut])
        del self.buffer[:cut]
        self.buffer_start += cut // 2
        return taken

    # --- server VAD -----------------------------------------------------------------------------

    def _track_turns(self) -> None:
        """A tracker for the session's turn detection, from the audio to come (None: off)."""
        turns = self.config.turn_detection
        self.turn_item = None
        self.tracker = None if turns is None else TurnTracker(turns, self.server_vad.grid, self.received / RATE)

    async def _detect_turns(self) -> None:
        """Score the newest window whenever enough audio came; announce and commit the turns
        decided. Behind the stream (a busy CPU), it scores the newest window, not every one."""
        while True:
            await self.new_audio.wait()
            self.new_audio.clear()
            tracker = self.tracker
            while tracker is not None and (window := tracker.next_window()) is not None:
                try:
                    scores = await self.server_vad.score(window.samples)
                except Exception as exc:  # noqa: BLE001 - a lost VAD replica: said, and the next window tries again
                    error = self.describe_error(exc)
                    await self.send_error("turn_detection_failed", f"server VAD: {error['message']}", None, None)
                    break
                if tracker is not self.tracker:  # turned off or replaced meanwhile
                    break
                for turn in tracker.scored(window, scores):
                    if isinstance(turn, TurnStarted):
                        self.turn_item, self.turn_start = _new_item(), turn.start
                        self._drop_until(int(turn.start * RATE))
                        started = {"audio_start_ms": _ms(turn.start), "item_id": self.turn_item}
                        await self.send({"type": "input_audio_buffer.speech_started", **started})
                    elif self.turn_item is not None:
                        await self._turn_ended(turn)
                if self.turn_item is None:  # silence before the next turn's padding is not kept
                    self._drop_until(int(tracker.keep_from() * RATE))

    async def _turn_ended(self, turn: TurnEnded) -> None:
        item, self.turn_item = self.turn_item, None
        # The buffer starts where the turn did; the silence it ends with stays for the next one's padding.
        pcm = self._slice(int(self.turn_start * RATE), int(turn.end * RATE))
        stopped = {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": _ms(turn.end), "item_id": item}
        if len(pcm) / 2 / RATE < MIN_COMMIT_S:  # a manual commit took the turn's audio meanwhile
            await self.send(stopped)
            return
        await self._commit(item, pcm, [stopped], whole_speech=True)  # the VAD found it: none runs again

    # --- results --------------------------------------------------------------------------------

    async def _transcribe_in_order(self) -> None:
        """One utterance at a time: the next one's prompt is the text before it."""
        while True:
            item, pcm, whole_speech = await self.utterances.get()
            try:
                await self._answer(item, pcm, whole_speech)
            finally:
                self.unanswered -= 1
                if not self.unanswered:
                    self.answered.set()

    async def _answer(self, item: str, pcm: bytes, whole_speech: bool) -> None:
        done = {"item_id": item, "content_index": 0}
        try:
            wav = await asyncio.to_thread(wav_bytes, pcm)  # resampling up to 30 s: off the event loop
            text, language = await self.transcribe(wav, self.live.request(whole_speech))
        except Exception as exc:  # noqa: BLE001 - the client hears of it; the session lives on (cancelling is no Exception)
            error = {"type": "transcription_error", "param": None, **self.describe_error(exc)}
            await self.send({"type": "conversation.item.input_audio_transcription.failed", **done, "error": error})
            return
        self.live.completed(text, language)
        # One delta with the whole text (as OpenAI's whisper-1 sends): clients that render deltas show it.
        await self.send({"type": "conversation.item.input_audio_transcription.delta", **done, "delta": text})
        usage = {"type": "duration", "seconds": round(len(pcm) / 2 / RATE, 3)}
        await self.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                **done,
                "transcript": text,
                "usage": usage,
            }
        )

    async def send(self, event: dict) -> None:
        async with self.send_lock:
            await self.ws.send_text(json.dumps({"event_id": f"event_{uuid.uuid4().hex[:20]}", **event}))

    async def send_error(self, code: str, message: str, param: str | None, event_id: str | None) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message, "param": param}
        await self.send({"type": "error", "error": {**error, "event_id": event_id}})


def _new_item() -> str:
    return f"item_{uuid.uuid4().hex[:20]}"


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))
