"""serve/streaming.py: the SSE events of a streamed transcription, driven by real asyncio tasks."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from pipeline.errors import AudioDecodeError
from pipeline.formats import FORMATS
from pipeline.schema import ChunkResult, Segment, Transcript, Word
from serve.streaming import TextDeltas, chunk_text, stream_transcription


def result(index: int, *texts: str) -> ChunkResult:
    segments = [Segment(start=float(index), end=index + 0.5, text=t) for t in texts]
    return ChunkResult("a", index, "en", segments, start=float(index), end=index + 1.0)


PLAN = SimpleNamespace(asr_model="bundled/base", language="de")  # what the headers read of the routed plan
JSON_PLAN = SimpleNamespace(format=FORMATS["json"])


def error_body(exc: BaseException) -> dict:
    return {"error": {"message": str(exc), "type": "server_error", "code": getattr(exc, "code", "error")}}


async def collect(run) -> list[dict | str]:
    response = await stream_transcription(run, error_body, lambda done: {}, "rid")
    out = []
    async for part in response.body_iterator:
        for line in part.decode().split("\n\n"):
            if line:
                out.append(line[6:] if line == "data: [DONE]" else json.loads(line[6:]))
    return out


def test_deltas_join_into_the_transcripts_text():
    chunks = [result(0, " Hello there.", " "), result(1), result(2, " General Kenobi.")]
    transcript = Transcript([s for c in chunks for s in c.segments], "en", 3.0)

    async def run(progress):
        for chunk in chunks:
            progress(PLAN, chunk)
            await asyncio.sleep(0)
        return JSON_PLAN, transcript, None

    events = asyncio.run(collect(run))
    assert [e["type"] for e in events[:-1]] == ["transcript.text.delta"] * 2 + ["transcript.text.done"]
    assert "".join(e["delta"] for e in events[:2]) == transcript.text == events[2]["text"]
    assert events[2]["usage"] == {"type": "duration", "seconds": 3} and events[-1] == "[DONE]"


def test_a_failure_after_the_first_delta_is_an_error_event():
    async def run(progress):
        progress(PLAN, result(0, "partial"))
        await asyncio.sleep(0.01)
        raise AudioDecodeError("the replica lost it")

    events = asyncio.run(collect(run))
    assert events[0] == {"type": "transcript.text.delta", "delta": "partial"}
    assert events[1]["type"] == "error" and events[1]["error"]["code"] == "audio_undecodable"
    assert len(events) == 2, "no done and no [DONE] after an error"


def test_a_failure_before_anything_streams_raises_for_an_http_error():
    async def run(progress):
        raise AudioDecodeError("not audio")

    with pytest.raises(AudioDecodeError):
        asyncio.run(collect(run))


def test_a_cache_hit_streams_its_whole_text_at_once():
    transcript = Transcript([Segment(0.0, 1.0, " All of it.")], "en", 1.0)

    async def run(progress):
        return JSON_PLAN, transcript, None

    events = asyncio.run(collect(run))
    assert [e["type"] for e in events[:-1]] == ["transcript.text.delta", "transcript.text.done"]
    assert events[0]["delta"] == "All of it."


def test_a_closed_stream_cancels_the_work():
    started, cancelled = asyncio.Event(), []

    async def main():
        async def run(progress):
            progress(PLAN, result(0, "first"))
            started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        response = await stream_transcription(run, error_body, lambda done: {}, "rid")
        body = response.body_iterator
        await body.__anext__()  # the first delta; then the client goes away
        await started.wait()
        await body.aclose()
        await asyncio.sleep(0)

    asyncio.run(main())
    assert cancelled == [True]


def test_headers_go_with_the_first_event_and_a_client_gone_before_the_body_cancels_the_work():
    cancelled = []

    async def main():
        async def run(progress):
            progress(PLAN, result(0, "first"))
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        response = await stream_transcription(run, error_body, lambda done: {"X-Cache": "hit"}, "rid")
        headers = dict(response.headers)
        assert (headers["x-request-id"], headers["x-whisperx-model"], headers["x-whisperx-language"]) == (
            "rid",
            "bundled/base",
            "de",
        )
        assert "x-cache" not in headers  # only a finished request knows it
        await response.background()  # what Starlette runs however the response ends
        await asyncio.sleep(0)

    asyncio.run(main())
    assert cancelled == [True]


def test_diarized_json_streams_its_segments_before_done():
    words = [Word("Hello", 0.0, 0.4, speaker="SPEAKER_00"), Word("Ada.", 0.5, 0.9, speaker="Ada")]
    transcript = Transcript([Segment(0.0, 0.9, " Hello Ada.", words)], "en", 1.0)

    async def run(progress):
        return SimpleNamespace(format=FORMATS["diarized_json"]), transcript, None

    events = asyncio.run(collect(run))
    kinds = [e["type"] for e in events[:-1]]
    assert kinds == [
        "transcript.text.delta",
        "transcript.text.segment",
        "transcript.text.segment",
        "transcript.text.done",
    ]
    assert [(e["speaker"], e["text"], e["id"]) for e in events[1:3]] == [
        ("A", "Hello", "seg_0"),
        ("Ada", "Ada.", "seg_1"),
    ]


def test_text_deltas_and_chunk_text():
    deltas = TextDeltas()
    assert deltas.next("") == "" and deltas.next("a b") == "a b" and deltas.next("c") == " c"
    assert deltas.rest("a b c d") == " d" and deltas.rest("other") == ""
    assert chunk_text(result(0, " x ", "", " y")) == "x y"
