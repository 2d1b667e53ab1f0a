"""Live transcription sessions (serve/realtime.py) against the running service: a real WebSocket
client (`websockets`) sends real speech at real-time pace in OpenAI's Realtime transcription
events; utterances it commits come back as `.completed` transcripts, in commit order, equal to
the same audio sent as a file; both set-up shapes; malformed messages get `error` events and
the session lives on; other WebSockets are refused."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import jiwer
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from benchmarks.bench_realtime import pcm24k
from benchmarks.evaluation import normalize_english
from tests.session import AUTH

RATE = 24000  # OpenAI pcm16, as benchmarks.bench_realtime.pcm24k makes it
STEP_S = 0.1  # 100 ms of audio per append, as a microphone client sends it
COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"


def is_the_fox(transcript: str) -> bool:
    """The espeak sentence came back: tiny.en hears its "brown" as "round" in some cuts of it."""
    return {"quick", "fox", "lazy", "dog"} <= set(normalize_english(transcript).split())


def ws_url(service, path: str = "/v1/realtime?intent=transcription") -> str:
    return service.base.replace("http://", "ws://") + path


async def send(ws, **event) -> None:
    await ws.send(json.dumps(event))


async def receive(ws, timeout: float = 120) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def stream(ws, pcm: bytes) -> float:
    """Append `pcm` in 100 ms pieces at real-time pace; returns when the last one was sent."""
    step = int(RATE * STEP_S) * 2
    started = time.monotonic()
    for i, at in enumerate(range(0, len(pcm), step)):
        await asyncio.sleep(max(0.0, started + i * STEP_S - time.monotonic()))
        await send(ws, type="input_audio_buffer.append", audio=base64.b64encode(pcm[at : at + step]).decode())
    return time.monotonic()


def update(language: str | None = "en") -> dict:
    audio_input = {
        "format": {"type": "audio/pcm", "rate": RATE},
        "transcription": {"model": "whisper-1", "language": language},
        "turn_detection": None,
    }
    return {"type": "session.update", "session": {"type": "transcription", "audio": {"input": audio_input}}}


def _input(**fields) -> dict:
    return {"audio": {"input": fields}}


def run(coroutine):
    return asyncio.run(coroutine)


def test_committed_utterances_come_back_in_order_as_the_file_does(service, client, speech_dir, speak):
    jfk = speech_dir / "jfk.flac"
    fox = speak("the quick brown fox jumps over the lazy dog")
    rows = (speech_dir / "references.tsv").read_text().splitlines()
    reference = next(row.split("\t")[3] for row in rows if row.startswith("jfk"))

    async def session():
        async with connect(ws_url(service), additional_headers=AUTH) as ws:
            created = await receive(ws)
            assert created["type"] == "session.created" and created["event_id"]
            assert created["session"]["type"] == "transcription"
            assert created["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad", "OpenAI's default"
            await ws.send(json.dumps(update()))
            updated = await receive(ws)
            assert updated["type"] == "session.updated"
            assert updated["session"]["audio"]["input"]["transcription"]["language"] == "en"
            spoken_end = await stream(ws, pcm24k(jfk))
            await send(ws, type="input_audio_buffer.commit")
            first = await receive(ws)
            await stream(ws, pcm24k(fox))
            await send(ws, type="input_audio_buffer.commit")
            events, arrived = [first], [time.monotonic()]
            while sum(e["type"] == COMPLETED for e in events) < 2:
                events.append(await receive(ws))
                arrived.append(time.monotonic())
            first_done = next(t for e, t in zip(events, arrived, strict=True) if e["type"] == COMPLETED)
            return events, first_done - spoken_end

    events, delay = run(session())
    committed = [e for e in events if e["type"] == "input_audio_buffer.committed"]
    completed = [e for e in events if e["type"] == COMPLETED]
    assert len(committed) == 2 and committed[0]["previous_item_id"] is None
    assert committed[1]["previous_item_id"] == committed[0]["item_id"]
    assert [c["item_id"] for c in completed] == [c["item_id"] for c in committed], "in commit order"
    assert all(c["content_index"] == 0 and c["event_id"] for c in completed)
    assert events.index(committed[0]) < events.index(completed[0])
    live = completed[0]["transcript"]
    assert jiwer.wer(normalize_english(reference), normalize_english(live)) <= 0.1, live
    with open(jfk, "rb") as f:
        fields, fresh = {"language": "en"}, {"Cache-Control": "no-cache"}
        as_file = client.post("/v1/audio/transcriptions", files={"file": f}, data=fields, headers=fresh).json()["text"]
    file_wer = jiwer.wer(normalize_english(reference), normalize_english(as_file))
    live_wer = jiwer.wer(normalize_english(reference), normalize_english(live))
    assert live_wer <= file_wer + 0.02, (live, as_file)
    assert is_the_fox(completed[1]["transcript"])
    print(f"end of speech -> completed: {delay:.2f} s")


def test_server_vad_finds_the_turns_and_commits_them(service, speech_dir, speak):
    """OpenAI's default turn detection: the client only streams, the server says where speech
    started and stopped, commits each turn and transcribes it."""
    jfk = pcm24k(speech_dir / "jfk.flac")
    fox = pcm24k(speak("the quick brown fox jumps over the lazy dog"))
    pause = bytes(2 * RATE)  # one second of silence between and after
    rows = (speech_dir / "references.tsv").read_text().splitlines()
    reference = next(row.split("\t")[3] for row in rows if row.startswith("jfk"))

    async def session():
        async with connect(ws_url(service), additional_headers=AUTH) as ws:
            await receive(ws)  # session.created
            await send(ws, type="session.update", session=_input(transcription={"language": "en"}))
            updated = await receive(ws)
            sender = asyncio.create_task(stream(ws, jfk + pause + fox + pause))
            events: list[dict] = []
            while not (sender.done() and events and not _open_items(events)):
                sending = not sender.done()
                try:  # while audio is still going out, look again at least twice a second
                    events.append(await receive(ws, timeout=0.5 if sending else 120))
                except TimeoutError:
                    if not sending:
                        raise
            await sender
            return updated, events

    updated, events = run(session())
    assert updated["session"]["audio"]["input"]["turn_detection"] == {
        "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500
    }  # fmt: skip
    assert not [e for e in events if e["type"] == "error"], events
    items = [e["item_id"] for e in events if e["type"] == "input_audio_buffer.speech_started"]
    assert len(items) >= 2, [e["type"] for e in events]
    previous, last_end = None, -1
    for item in items:
        mine = [(i, e) for i, e in enumerate(events) if e.get("item_id") == item]
        kinds = [e["type"] for _, e in mine]
        assert kinds == [
            "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed", DELTA, COMPLETED,
        ], kinds  # fmt: skip
        started, stopped, committed = (e for _, e in mine[:3])
        # a turn's padding may take the silence the one before ended with (500 ms), no more
        assert last_end - 500 <= started["audio_start_ms"] < stopped["audio_end_ms"]
        assert committed["previous_item_id"] == previous
        previous, last_end = item, stopped["audio_end_ms"]
    completed = {e["item_id"]: e["transcript"] for e in events if e["type"] == COMPLETED}
    jfk_ms = len(jfk) / 2 / RATE * 1000
    stops = {e["item_id"]: e["audio_end_ms"] for e in events if e["type"] == "input_audio_buffer.speech_stopped"}
    starts = {e["item_id"]: e["audio_start_ms"] for e in events if e["type"] == "input_audio_buffer.speech_started"}
    assert stops[items[-1]] > jfk_ms + 1000 and starts[items[-1]] >= jfk_ms, "the fox is a turn of its own"
    assert is_the_fox(completed[items[-1]])
    # JFK's pauses (0.6-1 s) cut the sentence into four turns, and tiny.en hears a 2.7 s turn less
    # well than the whole (2 of 22 words here); over the dev set's recordings the joined turns
    # are within 2 WER points of the files' (benchmarks/bench_realtime.py, BENCHMARKS.md).
    live = " ".join(completed[i] for i in items[:-1])
    assert jiwer.wer(normalize_english(reference), normalize_english(live)) <= 0.15, live


def test_with_server_vad_the_client_may_still_commit_and_clear(service, speak):
    said = pcm24k(speak("the quick brown fox jumps over the lazy dog"))

    async def session():
        async with connect(ws_url(service), additional_headers=AUTH) as ws:
            await receive(ws)  # session.created: server_vad
            await stream(ws, said)  # no silence after: the turn is still open
            await send(ws, type="input_audio_buffer.commit")
            events = [await receive(ws)]
            while events[-1]["type"] != COMPLETED:
                events.append(await receive(ws))
            await stream(ws, said[: len(said) // 2])
            await send(ws, type="input_audio_buffer.clear")
            while events[-1]["type"] != "input_audio_buffer.cleared":
                events.append(await receive(ws))
            return events

    events = run(session())
    kinds = [e["type"] for e in events]
    started = [e for e in events if e["type"] == "input_audio_buffer.speech_started"]
    committed = next(e for e in events if e["type"] == "input_audio_buffer.committed")
    assert started and committed["item_id"] == started[0]["item_id"], "the open turn is the one committed"
    assert "input_audio_buffer.speech_stopped" not in kinds[: kinds.index(COMPLETED)]
    assert is_the_fox(events[kinds.index(COMPLETED)]["transcript"])
    assert kinds.count("input_audio_buffer.committed") == 1, "the cleared speech is never committed"


@pytest.mark.slow  # its own app (the Vad deployment), shared with test_serve's and the replica kills
def test_server_vad_where_the_vad_is_a_deployment(full_service, speak):
    """The gpu profile's placement: the session's windows are scored by the Vad replicas."""
    said = pcm24k(speak("the quick brown fox jumps over the lazy dog"))

    async def session():
        async with connect(ws_url(full_service), additional_headers=AUTH) as ws:
            await receive(ws)  # session.created: server_vad
            await stream(ws, said + bytes(2 * RATE))
            events = [await receive(ws)]
            while events[-1]["type"] != COMPLETED:
                events.append(await receive(ws))
            return events

    assert full_service.health()["vad"] == "deployment"
    events = run(session())
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                         "input_audio_buffer.committed"], kinds  # fmt: skip
    assert is_the_fox(events[-1]["transcript"])


def _open_items(events: list[dict]) -> set[str]:
    """Turns whose speech started and whose transcript has not come yet."""
    started = {e["item_id"] for e in events if e["type"] == "input_audio_buffer.speech_started"}
    return started - {e["item_id"] for e in events if e["type"] == COMPLETED}


def test_the_older_set_up_shape(service, speak):
    said = speak("good morning everyone")

    async def session():
        async with connect(ws_url(service), additional_headers=AUTH) as ws:
            await receive(ws)  # session.created
            transcription = {"model": "whisper-1", "language": "en"}
            legacy = {"input_audio_format": "pcm16", "input_audio_transcription": transcription}
            await send(ws, type="transcription_session.update", session={**legacy, "turn_detection": None})
            updated = await receive(ws)
            await stream(ws, pcm24k(said))
            await send(ws, type="input_audio_buffer.commit")
            committed, delta, completed = await receive(ws), await receive(ws), await receive(ws)
            return updated, committed, delta, completed

    updated, committed, delta, completed = run(session())
    assert (
        delta["type"] == DELTA
        and delta["item_id"] == committed["item_id"]
        and delta["delta"] == completed["transcript"]
    )
    assert updated["type"] == "transcription_session.updated"
    assert updated["session"]["input_audio_format"] == "pcm16" and updated["session"]["turn_detection"] is None
    assert committed["type"] == "input_audio_buffer.committed"
    assert completed["type"] == COMPLETED and completed["item_id"] == committed["item_id"]
    assert "good morning" in completed["transcript"].lower()


def test_malformed_messages_get_error_events_and_the_session_lives_on(service, speak):
    said = speak("the session is still alive")
    bad = [
        ("{not json", "invalid_json", None),
        (json.dumps({"type": "input_audio_buffer.explode", "event_id": "evt_1"}), "invalid_event_type", "type"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": "***"}), "invalid_base64", "audio"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"odd").decode()}), "invalid_audio",
         "audio"),
        (json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty", None),
        (json.dumps({"type": "session.update", "session": _input(format={"type": "audio/pcmu"})}),
         "invalid_value", "session.audio.input"),
        (json.dumps({"type": "session.update", "session": _input(turn_detection={"type": "semantic_vad"})}),
         "unsupported_turn_detection", "session.audio.input.turn_detection.type"),
        (json.dumps({"type": "session.update", "session": _input(turn_detection={"threshold": 2})}),
         "invalid_value", "session.audio.input.turn_detection"),
        (json.dumps([1, 2]), "invalid_event", "type"),
    ]  # fmt: skip

    async def session():
        async with connect(ws_url(service), additional_headers=AUTH) as ws:
            await receive(ws)  # session.created
            await ws.send(json.dumps(update()))  # the client commits
            await receive(ws)
            errors = []
            for message, _, _ in bad:
                await ws.send(message)
                errors.append(await receive(ws))
            await stream(ws, pcm24k(said))
            await send(ws, type="input_audio_buffer.commit")
            return errors, await receive(ws), [await receive(ws), await receive(ws)][-1]

    errors, committed, completed = run(session())
    for error, (_, code, param) in zip(errors, bad, strict=True):
        assert error["type"] == "error", error
        assert error["error"]["code"] == code and error["error"]["param"] == param, error
        assert error["error"]["type"] == "invalid_request_error" and error["error"]["message"]
    assert errors[1]["error"]["event_id"] == "evt_1", "names the event it answers"
    assert committed["type"] == "input_audio_buffer.committed"
    assert completed["type"] == COMPLETED and "alive" in completed["transcript"].lower()


@pytest.mark.parametrize(
    "path, headers",
    [
        ("/v1/realtime?intent=transcription", {}),  # no API key
        ("/v1/realtime?intent=transcription", {"Authorization": "Bearer wrong"}),
        ("/v1/realtime?intent=conversation", AUTH),  # only transcription sessions
        ("/v1/other", AUTH),  # no WebSocket there
    ],
)
def test_other_websockets_are_refused_before_the_upgrade(service, path, headers):
    async def attempt():
        async with connect(ws_url(service, path), additional_headers=headers):
            pass

    with pytest.raises(InvalidStatus) as refused:
        run(attempt())
    assert refused.value.response.status_code == 403


def test_the_api_key_may_come_as_openais_subprotocol(service):
    from tests.session import API_KEY

    async def attempt():
        async with connect(ws_url(service), subprotocols=[f"openai-insecure-api-key.{API_KEY}", "realtime"]) as ws:
            return await receive(ws)

    assert run(attempt())["type"] == "session.created"


def test_the_openai_sdk_realtime_client(service, speak):
    from openai import AsyncOpenAI

    from tests.session import API_KEY

    pcm = pcm24k(speak("testing the software development kit"))

    async def session():
        client = AsyncOpenAI(base_url=f"{service.base}/v1", api_key=API_KEY)
        async with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
            created = await connection.recv()
            await connection.session.update(session=update()["session"])
            updated = await connection.recv()
            for at in range(0, len(pcm), 4800):
                await connection.input_audio_buffer.append(audio=base64.b64encode(pcm[at : at + 4800]).decode())
            await connection.input_audio_buffer.commit()
            events = [await connection.recv()]
            while events[-1].type != COMPLETED:
                events.append(await connection.recv())
            return created, updated, events

    created, updated, events = run(session())
    assert created.type == "session.created" and updated.type == "session.updated"
    assert events[0].type == "input_audio_buffer.committed"
    assert "development kit" in events[-1].transcript.lower()
