"""OpenAI's streamed transcription (`stream=true`): Server-Sent Events as OpenAI sends them.

`transcript.text.delta` events carry the text in audio order, each as soon as its chunk and every
earlier one are decoded; `transcript.text.done` the whole text and `usage`; then `data: [DONE]`.
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
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from pipeline.formats import usage
from pipeline.plan import Plan
from pipeline.schema import ChunkResult, Transcript

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


async def stream_transcription(
    run: Run, error_body: Callable[[BaseException], dict], headers: Callable[[tuple], dict], request_id: str
) -> StreamingResponse:
    """Start `run(progress)`; answer an HTTP error if it fails before anything is streamed."""
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
        _events(task, pieces, first, error_body),
        media_type="text/event-stream",
        headers=response_headers,
        # runs however the response ends, even when the client left before the body began
        background=BackgroundTask(task.cancel),
    )


async def _events(task: asyncio.Task, pieces: asyncio.Queue, waiting: asyncio.Task, error_body) -> AsyncIterator[bytes]:
    deltas = TextDeltas()
    try:
        while True:
            await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if waiting.done():
                if delta := deltas.next(chunk_text(waiting.result()[1])):
                    yield event({"type": "transcript.text.delta", "delta": delta})
                waiting = asyncio.create_task(pieces.get())
                continue
            waiting.cancel()
            while not pieces.empty():  # decoded before the request finished: still in order
                if delta := deltas.next(chunk_text(pieces.get_nowait()[1])):
                    yield event({"type": "transcript.text.delta", "delta": delta})
            break
        try:
            _, transcript, _ = task.result()
        except Exception as exc:  # noqa: BLE001 - after the stream began: an error event
            yield event({"type": "error", **error_body(exc)})
            return
        yield from_transcript(transcript, deltas)
        yield b"data: [DONE]\n\n"
    finally:  # the client went away (or the stream ended): nothing keeps running for it
        waiting.cancel()
        task.cancel()


def from_transcript(transcript: Transcript, deltas: TextDeltas) -> bytes:
    """The last delta (the whole text when nothing was streamed: a cache hit) and the done event."""
    out = b""
    if rest := deltas.rest(transcript.text):
        out += event({"type": "transcript.text.delta", "delta": rest})
    return out + event({"type": "transcript.text.done", "text": transcript.text, "usage": usage(transcript)})
