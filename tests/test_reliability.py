"""Reliability of the service on a real local Ray cluster over real HTTP on 127.0.0.1:
a model replica SIGKILLed under load fails no request (Transcriber, Aligner and Diarizer alike),
decompression bombs are refused from their header, any non-multipart body is the audio.

The kills run on `full_service` (every model deployment: the Vad and a wav2vec2 Aligner, a tiny
one with random weights built by the test, since no CTC model can be had offline: its times
are meaningless, but the calls, the replica and its death are real), after its other tests
(`kills`). The rest share config.yaml's app.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import ffmpeg
from tests.test_valid_audio import fixed_cases, speech_pools, write_case

APP = "whisperx"
COMPUTE = {"Cache-Control": "no-cache"}
REQUESTS = 3  # concurrent diarized, aligned requests of 60 s while a replica is killed


@pytest.fixture(scope="module")
def long_audio(pyannote_sample, tmp_path_factory):
    """~60 s: sample.wav twice (2-3 chunks)."""
    path = tmp_path_factory.mktemp("long") / "long.wav"
    ffmpeg("-stream_loop", "1", "-i", str(pyannote_sample), "-c", "copy", str(path))
    return path


def _info(kind: str) -> dict:
    from ray import serve

    return serve.get_deployment_handle(kind, app_name=APP).info.remote().result(timeout_s=30)


def _busy(kind: str) -> bool:
    """The replica itself reports work in hand (not only calls on their way to it)."""
    info = _info(kind)
    return (info["batches_decoding"] if kind == "Transcriber" else info["calls"]) > 0


@pytest.mark.slow  # the app with every model deployment, three kills under load: minutes
@pytest.mark.kills
@pytest.mark.parametrize("kind", ["Transcriber", "Aligner", "Diarizer"])
def test_replica_killed_under_load_fails_no_request(kind, full_service, long_audio):
    client = full_service.client
    pid = _info(kind)["pid"]
    audio = long_audio.read_bytes()

    def post():
        return client.post("/v1/transcribe?diarize=true&language=en", content=audio, headers=COMPUTE)

    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        futures = [pool.submit(post) for _ in range(REQUESTS)]
        deadline = time.monotonic() + 120
        while not _busy(kind):
            assert time.monotonic() < deadline, f"the {kind} never got work"
            assert not all(f.done() for f in futures), "all requests ended before the kill"
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
        responses = [f.result() for f in futures]

    assert [r.status_code for r in responses] == [200] * REQUESTS, [
        r.text[:200] for r in responses if r.status_code != 200
    ]
    bodies = [r.json() for r in responses]
    assert sum(b["service"]["retries"] for b in bodies) >= 1, "no call was resent: the kill hit nothing in flight"
    for body in bodies:
        assert body["segments"] and body["models"]["align"].startswith("wav2vec2")
        assert {w.get("speaker") for s in body["segments"] for w in s["words"]} - {None}
    assert _info(kind)["pid"] != pid  # a new replica serves now
    health = client.get("/healthz").json()
    assert (health["chunks_in_flight"], health["decoded_bytes_in_flight"]) == (0, 0)


def _silence_flac(path, seconds: int, headerless: bool = False) -> bytes:
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo"]
    cmd += ["-t", str(seconds), "-f", "flac"]
    if headerless:  # written to a pipe: the header cannot be rewritten with the length
        with open(path, "wb") as out:
            subprocess.run([*cmd, "pipe:1"], stdout=out, check=True)
    else:
        subprocess.run([*cmd, "-y", str(path)], check=True)
    return path.read_bytes()


def test_decompression_bomb_is_refused_from_its_header(service, client, tmp_path):
    service.tune(Ingress={"max_audio_seconds": 600})
    bomb = _silence_flac(tmp_path / "bomb.flac", 3600)  # 1 h of silence in ~1 MB; the limit is 600 s
    assert len(bomb) < 2_000_000
    started = time.monotonic()
    response = client.post("/v1/transcribe", files={"file": ("bomb.flac", bomb)})
    elapsed = time.monotonic() - started
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "audio_too_long" and "from its header" in error["message"]
    print(f"bomb refused in {elapsed:.3f} s")
    assert client.get("/healthz").json()["decoded_bytes_in_flight"] == 0


def test_headerless_bomb_stops_at_the_limit(service, client, tmp_path):
    service.tune(Ingress={"max_audio_seconds": 600})
    bomb = _silence_flac(tmp_path / "headerless.flac", 1200, headerless=True)
    response = client.post("/v1/audio/transcriptions", files={"file": ("bomb.flac", bomb)})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "audio_too_long"
    assert client.get("/healthz").json()["decoded_bytes_in_flight"] == 0


def test_raw_body_with_curls_default_content_type(client, pyannote_sample):
    """curl --data-binary @talk.wav sends application/x-www-form-urlencoded: still the audio."""
    response = client.post(
        "/v1/transcribe?language=en&response_format=text",
        content=pyannote_sample.read_bytes(),
        headers={"content-type": "application/x-www-form-urlencoded", **COMPUTE},
    )
    assert response.status_code == 200, response.text
    assert "New Jersey" in response.text


@pytest.mark.slow
def test_valid_audio_never_gets_a_5xx(client, pyannote_sample, speak, tmp_path):
    """The property test's named cases (tests/test_valid_audio.py: 0.1 s speech, silence only,
    6 channels at 8 kHz, 2.6 s speech, 40 s) over HTTP, on both endpoints, in several formats,
    diarized or not, language given or not: every answer is a 200."""
    statuses = {}
    pools = speech_pools(pyannote_sample, speak)
    for case in fixed_cases():
        body = write_case(case, pools, tmp_path).read_bytes()
        for url in (
            "/v1/transcribe?diarize=true",
            "/v1/transcribe?response_format=srt&language=en",
            "/v1/transcribe?response_format=tsv&diarize=true&language=en",
        ):
            statuses[(case.name, url)] = client.post(url, content=body, headers=COMPUTE).status_code
        # The OpenAI endpoint computes once per case; its other formats render that result
        # (from the result cache: the formats differ only in rendering).
        for index, fmt in enumerate(("json", "verbose_json", "vtt", "text")):
            response = client.post(
                "/v1/audio/transcriptions",
                files={"file": ("audio", body)},
                data={"response_format": fmt, "timestamp_granularities[]": "word"},
                headers=COMPUTE if index == 0 else {},
            )
            statuses[(case.name, f"openai {fmt}")] = response.status_code
    assert set(statuses.values()) == {200}, {k: v for k, v in statuses.items() if v != 200}


@pytest.mark.slow  # on full_service, after its other tests
@pytest.mark.kills
def test_a_transcriber_killed_mid_utterance_fails_no_live_utterance(full_service, speech_dir):
    """A live session's committed utterance is resent like a file's chunks when the
    Transcriber replica decoding it dies: the session answers `.completed`, never `.failed`."""
    import asyncio
    import base64
    import json

    from websockets.asyncio.client import connect

    from benchmarks.bench_realtime import pcm24k
    from tests.session import AUTH
    from tests.test_realtime import COMPLETED, receive, update, ws_url

    pcm = pcm24k(speech_dir / "diarization" / "librispeech_3spk_turns.flac")  # 106 s: several chunks
    pid = _info("Transcriber")["pid"]

    async def session():
        async with connect(ws_url(full_service), additional_headers=AUTH, max_size=None) as ws:
            await receive(ws)
            await ws.send(json.dumps(update()))  # the client commits
            await receive(ws)
            for at in range(0, len(pcm), 480_000):  # 10 s per event: the point is the kill
                audio = base64.b64encode(pcm[at : at + 480_000]).decode()
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            deadline = time.monotonic() + 120
            while not await asyncio.to_thread(_busy, "Transcriber"):
                assert time.monotonic() < deadline, "the Transcriber never got the utterance"
                await asyncio.sleep(0.02)
            os.kill(pid, signal.SIGKILL)
            events = [await receive(ws, 300)]
            while events[-1]["type"] not in (COMPLETED, "conversation.item.input_audio_transcription.failed"):
                events.append(await receive(ws, 300))
            return events

    events = asyncio.run(session())
    assert events[-1]["type"] == COMPLETED, events[-1]
    assert len(events[-1]["transcript"].split()) > 100, "the whole utterance, not a part"
    assert _info("Transcriber")["pid"] != pid, "a new replica serves now"
