"""OpenAI's streamed transcription (stream=true) on the default service, through the real
`openai` SDK and raw HTTP: Server-Sent Events in audio order, the same text as unstreamed,
errors before the stream as HTTP errors, a cache hit streamed at once."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.conftest import ffmpeg
from tests.session import API_KEY


@pytest.fixture(scope="module")
def two_minutes(pyannote_sample, tmp_path_factory):
    """sample.wav three times: ~90 s, three 30 s chunks or more."""
    path = tmp_path_factory.mktemp("stream") / "ninety_seconds.wav"
    ffmpeg("-stream_loop", "2", "-i", str(pyannote_sample), "-c", "copy", str(path))
    return path


@pytest.fixture
def sdk(service):
    import openai

    return openai.OpenAI(base_url=f"{service.base}/v1", api_key=API_KEY, max_retries=0)


def streamed(sdk, path, **options) -> list:
    with open(path, "rb") as f:
        return list(sdk.audio.transcriptions.create(model="whisper-1", file=f, stream=True, **options))


def test_deltas_in_audio_order_then_done_with_the_same_text(sdk, two_minutes):
    events = streamed(sdk, two_minutes, extra_headers={"Cache-Control": "no-cache"})
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and set(kinds[:-1]) == {"transcript.text.delta"}
    assert len(kinds) >= 3, "one delta per chunk with speech: the file has several"
    deltas = "".join(e.delta for e in events[:-1])
    done = events[-1]
    assert deltas == done.text and "New Jersey" in done.text
    assert done.usage.type == "duration" and done.usage.seconds == 90
    with open(two_minutes, "rb") as f:
        whole = sdk.audio.transcriptions.create(model="whisper-1", file=f)
    assert whole.text == done.text  # streamed or not, the same transcript
    # The same request again: the cache holds it, and it streams at once in one delta.
    again = streamed(sdk, two_minutes)
    assert [e.type for e in again] == ["transcript.text.delta", "transcript.text.done"]
    assert again[0].delta == again[1].text == done.text


def test_sse_framing_and_errors_before_the_stream(service, two_minutes, pyannote_sample):
    url = f"{service.base}/v1/audio/transcriptions"
    headers = {"Authorization": f"Bearer {API_KEY}", "Cache-Control": "no-cache"}
    with open(pyannote_sample, "rb") as f:
        with httpx.stream("POST", url, files={"file": f}, data={"stream": "true"}, headers=headers, timeout=300) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    bodies = [json.loads(line[6:]) for line in lines[:-1]]
    assert bodies[-1]["type"] == "transcript.text.done" and "New Jersey" in bodies[-1]["text"]
    # What is wrong before any work is an ordinary HTTP error, not an event.
    with open(pyannote_sample, "rb") as f:
        refused = httpx.post(
            url, files={"file": f}, data={"stream": "true", "response_format": "srt"}, headers=headers, timeout=60
        )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unsupported_stream"
    broken = httpx.post(url, files={"file": ("x.mp3", b"not audio" * 100)}, data={"stream": "true"}, headers=headers)
    assert broken.status_code == 415 and broken.json()["error"]["code"] == "audio_undecodable"


def test_a_client_that_disconnects_cancels_its_remaining_chunks(service, pyannote_sample, tmp_path):
    six_minutes = tmp_path / "six_minutes.wav"  # 12 chunks of 30 s or more
    ffmpeg("-stream_loop", "11", "-i", str(pyannote_sample), "-c", "copy", str(six_minutes))
    client = service.client

    def decoded() -> int:
        return client.get("/healthz").json()["transcriber"]["chunks_decoded"]

    before = decoded()
    headers = {"Authorization": f"Bearer {API_KEY}", "Cache-Control": "no-cache"}
    url = f"{service.base}/v1/audio/transcriptions"
    with open(six_minutes, "rb") as f:
        with httpx.stream("POST", url, files={"file": f}, data={"stream": "true"}, headers=headers, timeout=300) as r:
            assert r.status_code == 200
            first = next(line for line in r.iter_lines() if line)
    assert json.loads(first[6:])["type"] == "transcript.text.delta"
    # The stream is closed: the request's chunks leave the queue instead of being decoded.
    deadline = time.monotonic() + 120
    while client.get("/healthz").json()["chunks_in_flight"]:
        assert time.monotonic() < deadline, "the cancelled request still holds chunks"
        time.sleep(0.2)
    assert decoded() - before < 12, "every chunk was decoded for a client that had left"
