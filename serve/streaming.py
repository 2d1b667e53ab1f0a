"""Streamed transcription (`stream=true`): OpenAI's Server-Sent Events (`OpenAiEvents`) on
/v1/audio/transcriptions, and newline-delimited JSON (`NativeLines`) on /v1/transcribe.

OpenAI's, as OpenAI sends them:
`transcript.text.delta` events carry the text in audio order, each as soon as its chunk and every
earlier one are decoded; with diarized_json, `transcript.text.segment` events (id, start, end,
text, speaker) follow once the speakers are known; `transcript.text.done` carries the whole text
and `usage`; then `data: [DONE]`.
What fails before the first event is an ordinary HTTP error (bad options, admission, decoding); a
failure after it is an `error` event (the SDK raises it), never a truncated stream. A client that
goes away cancels the request's work, whether or not the stream had begun.

The response headers go with the first event: X-Request-Id always, and X-WhisperX-Model and
-Language (known once the language routed the plan) or, for a cache hit, all of a plain response's.
A stream that joins identical work already in flight (the cache's compute-once) gets that work's
text when it finishes, in one delta: only the request that started the work sees it chunk by chunk.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict

from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from pipeline.formats import diarized_segments, usage
from pipeline.plan import Plan
from pipeline.schema import ChunkResult, Transcript, segment_dict

Progress = Callable[[Plan, ChunkResult], None]  # each chunk's result, in audio order, with the routed plan
Run = Callable[[Progress], Awaitable[tuple]]  # progress -> (plan, transcript, stats)


def event(body: dict) -> bytes:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()


def chunk_text(result: ChunkResult) -> str:
    """A chunk's part of `Transcript.text` (segments joined by one space, empty ones dropped)."""
    return " ".join(s.text.strip() for s in result.segments if s.text.strip())


class TextDeltas:
    """Deltas whose concatenation is `Transcript.text` of the chunks so far."""

    def __init__(self) -> None:
        self.sent = ""

    def next(self, piece: str) -> str:
        if not piece:
            return ""
        delta = f" {piece}" if self.sent else piece
        self.sent += delta
        return delta

    def rest(self, text: str) -> str:
        """What the final text adds to the deltas sent (all of it for a cache hit)."""
        return text[len(self.sent) :] if text.startswith(self.sent) else ""


class OpenAiEvents:
    """OpenAI's SSE: a delta per chunk's text, diarized_json's segments, done, `[DONE]`."""

    media_type = "text/event-stream"

    def __init__(self) -> None:
        self.deltas = TextDeltas()

    def piece(self, plan: Plan, result: ChunkResult) -> bytes:
        delta = self.deltas.next(chunk_text(result))
        return event({"type": "transcript.text.delta", "delta": delta}) if delta else b""

    def done(self, plan: Plan, transcript: Transcript, stats) -> bytes:
        return from_transcript(transcript, self.deltas, segments=plan.format.needs_speakers) + b"data: [DONE]\n\n"

    def error(self, body: dict) -> bytes:
        return event({"type": "error", **body})


def line(body: dict) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode() + b"\n"


class NativeLines:
    """NDJSON, one object a line: `{"type": "segment", "segment": {...}}` for each segment (words,
    scores, speakers) as soon as it is final, then `{"type": "done", ...}` with the rest of
    WhisperX's result (language, duration, models, speaker_turns, service), or `{"type": "error",
    "error": {...}}`. A chunk's segments are final when it is decoded unless alignment or
    diarization still changes them: then they all come when those finish, and meanwhile each
    decoded chunk sends a draft of its text, `{"type": "draft", "index", "start", "end", "text"}`
    (the chunk's span; the page shows progress with them)."""

    media_type = "application/x-ndjson"

    def __init__(self) -> None:
        self.sent = 0  # segments sent so far

    def piece(self, plan: Plan, result: ChunkResult) -> bytes:
        if plan.aligns or plan.diarize:
            draft = {"index": result.index, "start": result.start, "end": result.end, "text": chunk_text(result)}
            return line({"type": "draft", **draft})
        self.sent += len(result.segments)
        return b"".join(line({"type": "segment", "segment": segment_dict(s)}) for s in result.segments)

    def done(self, plan: Plan, transcript: Transcript, stats) -> bytes:
        body = transcript.to_dict()
        segments = body.pop("segments")
        body.pop("word_segments", None)  # the segments' words, again
        out = b"".join(line({"type": "segment", "segment": s}) for s in segments[self.sent :])
        return out + line({"type": "done", **body, "service": asdict(stats)})

    def error(self, body: dict) -> bytes:
        return line({"type": "error", **body})


async def stream_transcription(
    run: Run,
    error_body: Callable[[BaseException], dict],
    headers: Callable[[tuple], dict],
    request_id: str,
    framing: OpenAiEvents | NativeLines | None = None,
) -> StreamingResponse:
    """Start `run(progress)`; answer an HTTP error if it fails before anything is streamed."""
    framing = framing or OpenAiEvents()
    pieces: asyncio.Queue[tuple[Plan, ChunkResult]] = asyncio.Queue()
    task = asyncio.create_task(run(lambda plan, result: pieces.put_nowait((plan, result))))
    first = asyncio.create_task(pieces.get())
    try:
        await asyncio.wait({task, first}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        first.cancel()
        raise
    if task.done() and task.exception() is not None:
        first.cancel()
        raise task.exception()
    response_headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Request-Id": request_id}
    if first.done():
        plan = first.result()[0]
        response_headers.update({"X-WhisperX-Model": plan.asr_model, "X-WhisperX-Language": plan.language or ""})
    else:
        response_headers.update(headers(task.result()))
    return StreamingResponse(
        _stream(task, pieces, first, error_body, framing),
        media_type=framing.media_type,
        headers=response_headers,
        # runs however the response ends, even when the client left before the body began
        background=BackgroundTask(task.cancel),
    )


async def _stream(task: asyncio.Task, pieces: asyncio.Queue, waiting: asyncio.Task, error_body, framing):
    try:
        while True:
            await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if waiting.done():
                if out := framing.piece(*waiting.result()):
                    yield out
                waiting = asyncio.create_task(pieces.get())
                continue
            waiting.cancel()
            while not pieces.empty():  # decoded before the request finished: still in order
                if out := framing.piece(*pieces.get_nowait()):
                    yield out
            break
        try:
            plan, transcript, stats = task.result()
        except Exception as exc:  # noqa: BLE001 - after the stream began: an error event
            yield framing.error(error_body(exc))
            return
        yield framing.done(plan, transcript, stats)
    finally:  # the client went away (or the stream ended): nothing keeps running for it
        waiting.cancel()
        task.cancel()


def from_transcript(transcript: Transcript, deltas: TextDeltas, segments: bool = False) -> bytes:
    """The last delta (the whole text when nothing was streamed: a cache hit), diarized_json's
    `transcript.text.segment` events (speakers are known once the whole file is diarized), and
    the done event."""
    out = b""
    if rest := deltas.rest(transcript.text):
        out += event({"type": "transcript.text.delta", "delta": rest})
    if segments:
        out += b"".join(event(segment) for segment in diarized_segments(transcript))
    return out + event({"type": "transcript.text.done", "text": transcript.text, "usage": usage(transcript)})
