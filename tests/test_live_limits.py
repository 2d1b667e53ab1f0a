"""Live sessions' bounds against the running service (serve/realtime.py, the Ingress): the
session cap, idle time, session length, the uncommitted buffer and the message size, each
refused with an `error` event naming its config field; vanished clients free everything. The
limits are the Ingress's `user_config`, tuned small per test and reset after."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from benchmarks.bench_realtime import pcm24k
from tests.session import AUTH
from tests.test_realtime import COMPLETED, RATE, is_the_fox, receive, run, send, stream, update, ws_url


@pytest.fixture
def tuned(service):
    yield service.tune
    service.reset()


async def _closed(ws, timeout: float = 60) -> tuple[list[dict], int]:
    """The events until the server closes the socket, and its close code."""
    events = []
    try:
        while True:
            events.append(await receive(ws, timeout))
    except ConnectionClosed as closed:
        return events, closed.rcvd.code


def test_sessions_past_the_cap_are_refused_with_an_error_event(service, tuned):
    tuned(Ingress={"live_max_sessions": 1})
    assert service.health()["live"] == {"sessions": 0, "max_sessions": 1}

    async def sessions():
        async with connect(ws_url(service), additional_headers=AUTH) as first:
            assert (await receive(first))["type"] == "session.created"
            assert service.health()["live"]["sessions"] == 1
            async with connect(ws_url(service), additional_headers=AUTH) as second:
                refused, code = await _closed(second)
            await send(first, type="input_audio_buffer.clear")  # the first lives on
            return refused, code, await receive(first)

    refused, code, cleared = run(sessions())
    assert code == 1013, "try again later"
    assert [e["type"] for e in refused] == ["error"]
    assert (
        refused[0]["error"]["code"] == "session_limit_reached" and "live_max_sessions" in refused[0]["error"]["message"]
    )
    assert cleared["type"] == "input_audio_buffer.cleared"


def test_an_idle_session_ends_with_an_error_event(service, tuned):
    tuned(Ingress={"live_idle_timeout_s": 1.0})

    async def session():
        async with connect(ws_url(service), additional_headers=AUTH) as ws:
            return await _closed(ws)

    events, code = run(session())
    assert [e["type"] for e in events] == ["session.created", "error"] and code == 1000
    assert events[-1]["error"]["code"] == "session_idle_timeout"
    assert "live_idle_timeout_s" in events[-1]["error"]["message"]


def test_an_expiring_session_answers_its_open_turn_first(service, tuned, speak):
    said = pcm24k(speak("the quick brown fox jumps over the lazy dog"))
    tuned(Ingress={"live_max_session_s": len(said) / 2 / RATE + 1.5})

    async def session():
        async with connect(ws_url(service), additional_headers=AUTH) as ws:
            await receive(ws)  # session.created: server VAD
            await stream(ws, said)  # no silence after it: the turn is open when the session ends
            return await _closed(ws)

    events, code = run(session())
    kinds = [e["type"] for e in events]
    assert code == 1000 and kinds[-1] == "error" and events[-1]["error"]["code"] == "session_expired", kinds
    assert "input_audio_buffer.committed" in kinds and kinds.index(COMPLETED) < len(kinds) - 1
    assert is_the_fox(events[kinds.index(COMPLETED)]["transcript"])


def test_the_uncommitted_buffer_and_a_message_are_bounded(service, tuned):
    tuned(Ingress={"live_max_buffer_s": 1.0, "live_max_message_bytes": 100_000})
    second = base64.b64encode(bytes(2 * RATE)).decode()  # one second of audio: ~64 kB as an event

    async def session():
        async with connect(ws_url(service), additional_headers=AUTH) as ws:
            await receive(ws)
            await ws.send(json.dumps(update()))  # the client commits: the buffer only grows
            await receive(ws)
            await send(ws, type="input_audio_buffer.append", audio=second)
            await send(ws, type="input_audio_buffer.append", audio=second[:4000])
            too_long = await receive(ws)
            await send(ws, type="input_audio_buffer.append", audio=second + second)
            too_big = await receive(ws)
            await send(ws, type="input_audio_buffer.clear")
            return too_long, too_big, await receive(ws)

    too_long, too_big, cleared = run(session())
    assert (
        too_long["error"]["code"] == "input_audio_buffer_too_large"
        and "live_max_buffer_s" in too_long["error"]["message"]
    )
    assert too_big["error"]["code"] == "invalid_event" and "live_max_message_bytes" in too_big["error"]["message"]
    assert cleared["type"] == "input_audio_buffer.cleared", "the session lives on"


def test_vanished_clients_free_their_sessions_and_queued_work(service, speak):
    """50 clients commit an utterance and drop the connection at once (no close handshake):
    the sessions, their chunks in the Transcriber's queue and the admission counts go back to
    idle, and the ingress's memory does not grow with them."""
    said = pcm24k(speak("this connection will vanish before its answer comes back", rate=120))
    step = int(RATE * 0.5) * 2

    async def vanish():
        ws = await connect(ws_url(service), additional_headers=AUTH)
        try:
            await receive(ws)
            await ws.send(json.dumps(update()))
            await receive(ws)
            for at in range(0, len(said), step):  # faster than real time: the point is the drop
                await send(ws, type="input_audio_buffer.append", audio=base64.b64encode(said[at : at + step]).decode())
            await send(ws, type="input_audio_buffer.commit")
            await receive(ws)  # committed: the utterance is in the executor's hands
        finally:
            ws.transport.abort()  # gone, mid-transcription, without a closing handshake

    async def rounds(count: int):
        for first in range(0, count, 5):  # five at a time: under the session cap
            await asyncio.gather(*(vanish() for _ in range(first, min(count, first + 5))))

    run(rounds(5))  # warm: the first sessions' one-time allocations
    ingress = service.health()["ingress_pid"]
    _wait_idle(service)
    before = _rss_mb(ingress)
    run(rounds(50))
    health = _wait_idle(service)
    grown_mb = _rss_mb(ingress) - before
    assert health["live"]["sessions"] == 0 and health["chunks_in_flight"] == 0
    assert health["decoded_bytes_in_flight"] == 0, "a decode cut short by its client holds nothing"
    assert health["transcriber"]["chunks_waiting"] == 0 and health["transcriber"]["live_chunks_waiting"] == 0
    assert grown_mb < 64, f"the ingress grew {grown_mb:.0f} MB over 50 vanished sessions"


def _rss_mb(pid: int) -> float:
    """A local process's resident memory (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def _wait_idle(service, timeout_s: float = 120) -> dict:
    """/healthz once no session, chunk or queued call is left (polled)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        health = service.health()
        idle = (
            health["live"]["sessions"] == 0
            and health["chunks_in_flight"] == 0
            and health["requests_preparing"] == 0
            and health["decoded_bytes_in_flight"] == 0
            and health["transcriber"]["chunks_waiting"] == 0
        )
        if idle or time.monotonic() > deadline:
            return health
        time.sleep(0.2)
