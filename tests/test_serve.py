"""The Ray Serve application on a real local Ray cluster, over real HTTP on 127.0.0.1.

These tests share the session's app: config.yaml's own (tests/session.py adds a port, an API
key and a cache folder). Requests that must reach the models send `Cache-Control: no-cache`;
limits a test needs smaller are the Ingress's `user_config` (`service.tune`), reconfigured in
place. The VAD in its own deployment (the gpu profile's placement) is `full_service`'s.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from benchmarks.evaluation import normalize_english
from tests.conftest import ffmpeg
from tests.session import API_KEY, config_application

COMPUTE = {"Cache-Control": "no-cache"}


@pytest.fixture(scope="module")
def long_audio(pyannote_sample, tmp_path_factory):
    """~60 s: sample.wav twice (several 30 s chunks)."""
    path = tmp_path_factory.mktemp("long") / "long.wav"
    ffmpeg("-stream_loop", "1", "-i", str(pyannote_sample), "-c", "copy", str(path))
    return path


def post_native(client, path, headers=COMPUTE, **fields):
    with open(path, "rb") as f:
        return client.post("/v1/transcribe", files={"file": (path.name, f)}, data=fields, headers=headers)


def test_health_and_models(client):
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["asr"] == "bundled/base"  # the first; English: tiny.en
    assert health.json()["transcriber"]["models"] == ["bundled/base", "bundled/tiny.en"]
    assert health.json()["vad"] == "ingress"  # config.yaml's cpu profile
    # The replica states are polled every 5 s: the first poll may predate the Ingress running.
    deadline = time.monotonic() + 30
    while health.json()["loading"] or not health.json()["replicas"]:
        assert time.monotonic() < deadline, health.json()
        time.sleep(0.5)
        health = client.get("/healthz")
    replicas = health.json()["replicas"]
    assert replicas["Transcriber"] == {"RUNNING": 1} and replicas["Ingress"] == {"RUNNING": 1}
    assert health.json()["loading"] == []
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["whisper-1", "bundled/base", "bundled/tiny.en"]


def assert_equals_the_library(client, library, path):
    response = post_native(client, path)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = library.transcribe(path)
    assert body["text"] == expected.text
    assert [w["word"] for w in body["word_segments"]] == [w.word for w in expected.words]
    assert body["service"]["chunks"] == len(body["service"]["batch_sizes"]) >= 1


def test_native_result_equals_the_library(client, local_pipeline, pyannote_sample, long_audio):
    for path in (pyannote_sample, long_audio):
        assert_equals_the_library(client, local_pipeline, path)


@pytest.mark.slow  # its own app (the Vad and an Aligner deployment), shared with the replica kills
def test_the_vad_deployment_gives_the_library_result(full_service, local_pipeline, long_audio):
    """The VAD scored in its own deployment, as the gpu profile places it (the Aligner there
    re-times words; their text stays)."""
    assert full_service.health()["vad"] == "deployment"
    assert_equals_the_library(full_service.client, local_pipeline, long_audio)


def test_concurrent_requests_are_batched_together(service, client, local_pipeline, speech_dir):
    # A longer batch wait than config.yaml's, so that concurrent requests reliably meet in one
    # batch on this 2-core machine, where two batches already run at once.
    service.tune(Transcriber={"max_batch_size": 4, "batch_wait_timeout_s": 0.3})
    paths = sorted((speech_dir / "librispeech").glob("*.wav"))[:8]
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda p: post_native(client, p), paths))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    bodies = [r.json() for r in responses]
    for path, body in zip(paths, bodies):  # each gets its own, correct transcript
        assert normalize_english(body["text"]) == normalize_english(local_pipeline.transcribe(path).text), path
    mixed = [n for b in bodies for n in b["service"]["batch_requests"]]
    print("\nbatch sizes:", [b["service"]["batch_sizes"] for b in bodies], "requests per batch:", mixed)
    assert max(mixed) >= 2, "no batch mixed chunks of different requests"


def test_openai_sdk_unchanged(service, pyannote_sample):
    import openai

    sdk = openai.OpenAI(base_url=f"{service.base}/v1", api_key=API_KEY)
    with open(pyannote_sample, "rb") as f:
        plain = sdk.audio.transcriptions.create(model="whisper-1", file=f)
    assert "New Jersey" in plain.text
    with open(pyannote_sample, "rb") as f:
        verbose = sdk.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="verbose_json", timestamp_granularities=["word", "segment"]
        )
    assert verbose.language == "english" and verbose.duration == pytest.approx(30.0, abs=0.01)
    assert verbose.words and all(w.start <= w.end for w in verbose.words)
    assert verbose.text == plain.text
    for fmt, marker in (("srt", "-->"), ("vtt", "WEBVTT"), ("text", "New Jersey")):
        with open(pyannote_sample, "rb") as f:
            out = sdk.audio.transcriptions.create(model="whisper-1", file=f, response_format=fmt)
        assert marker in out


def test_chunking_strategy_server_vad_maps_onto_the_vad(service, local_pipeline, pyannote_sample):
    """server_vad's silence and padding change the VAD's regions as OpenAI documents them; the
    SDK's nested form fields reach the plan; a bad one is refused naming the field."""
    import openai

    from pipeline.audio import load_audio
    from pipeline.chunking import ServerVad, vad_options

    audio, vad = load_audio(pyannote_sample), local_pipeline.vad
    plain = vad.analyze(audio)
    held = vad.analyze(audio, vad_options(vad.options, ServerVad(silence_duration_ms=2000, prefix_padding_ms=500)))
    assert len(held.speech) < len(plain.speech)  # pauses under 2 s no longer end a region
    assert held.speech[0][0] == pytest.approx(max(0.0, plain.speech[0][0] - 0.5), abs=0.02)  # 500 ms before
    assert vad.analyze(audio, vad_options(vad.options, ServerVad())).chunks  # OpenAI's defaults find speech
    sdk = openai.OpenAI(base_url=f"{service.base}/v1", api_key=API_KEY, max_retries=0)
    strategy = {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 500, "prefix_padding_ms": 200}
    with open(pyannote_sample, "rb") as f:
        result = sdk.audio.transcriptions.create(model="whisper-1", file=f, chunking_strategy=strategy)
    assert "New Jersey" in result.text
    with open(pyannote_sample, "rb") as f, pytest.raises(openai.UnprocessableEntityError) as info:
        sdk.audio.transcriptions.create(model="whisper-1", file=f, chunking_strategy={**strategy, "threshold": 2})
    assert "threshold" in info.value.message


def test_openapi_and_offline_docs_over_http(service, pyannote_sample):
    """/openapi.json and /docs answer without the API key (nothing else does); the document is valid
    OpenAPI and the page's every asset is served from the package; languages[] and keywords[] work."""
    import openai
    from openapi_spec_validator import validate

    spec = httpx.get(f"{service.base}/openapi.json", timeout=10)
    assert spec.status_code == 200
    validate(spec.json())
    page = httpx.get(f"{service.base}/docs", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:href|src)="(/docs/[^"]+)"', page.text)
    assert len(assets) == 4
    for asset in assets:
        served = httpx.get(f"{service.base}{asset}", timeout=10)
        assert served.status_code == 200 and len(served.content) > 500, asset
    assert httpx.get(f"{service.base}/docs/index.j2", timeout=10).status_code == 404
    assert httpx.get(f"{service.base}/v1/models", timeout=10).status_code == 401  # the rest keeps its key
    sdk = openai.OpenAI(base_url=f"{service.base}/v1", api_key=API_KEY, max_retries=0)
    with open(pyannote_sample, "rb") as f:
        result = sdk.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="verbose_json", languages=["en", "de"], keywords=["Jersey"]
        )
    assert result.language == "english" and "Jersey" in result.text


def test_diarize_runs_with_asr(client, pyannote_sample):
    response = post_native(client, pyannote_sample, diarize="true")
    body = response.json()
    assert "diarize" in body["service"]["stages"], "computed, not a cache hit"
    # Server-Timing carries the same stage seconds, in milliseconds
    timing = dict(part.split(";dur=") for part in response.headers["server-timing"].split(", "))
    seconds = body["service"]["seconds"]
    assert {"decode", "first_chunk", "chunk_decode", "asr", "diarize_wait", "total"} <= set(timing)
    assert all(abs(float(timing[name]) - 1000 * seconds[name]) < 0.1 for name in seconds)
    assert 0 < seconds["first_chunk"] < seconds["total"] and seconds["chunk_decode"] > 0
    assert body["models"]["diarize"] == "whisperx-segmentation+resemblyzer"
    assert len({w["speaker"] for w in body["word_segments"]}) == 2
    assert "diarize_wait" in body["service"]["seconds"]
    turns = body["speaker_turns"]
    assert len({t["speaker"] for t in turns}) >= 2
    assert [(t["start"], t["end"]) for t in turns] == sorted((t["start"], t["end"]) for t in turns)
    tsv = post_native(client, pyannote_sample, num_speakers="2", response_format="tsv")
    assert tsv.status_code == 200 and "SPEAKER_0" in tsv.text
    # rttm implies diarization; the file id is the upload's name, made safe for RTTM's columns.
    with open(pyannote_sample, "rb") as f:
        rttm = client.post(
            "/v1/transcribe", files={"file": ("call 7.wav", f)}, data={"response_format": "rttm"}, headers=COMPUTE
        )
    assert rttm.status_code == 200, rttm.text
    assert rttm.headers["content-type"].startswith("text/plain")
    lines = [line.split(" ") for line in rttm.text.splitlines()]
    assert lines and all(len(f) == 10 and f[:3] == ["SPEAKER", "call_7", "1"] for f in lines)
    assert len({f[7] for f in lines}) >= 2
    from ray import serve

    info = serve.get_deployment_handle("Diarizer", app_name="whisperx").info.remote().result(timeout_s=30)
    # No GPU reserved: two calls at a time, whose encoder forwards take turns (or are shared).
    assert info["concurrent_calls"] == 2 and info["batches"]["encoder"]["forwards"] >= 2
    assert info["batches"]["encoder"]["shared"] <= info["batches"]["encoder"]["forwards"]


def error_of(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == code
    return response.json()["error"]["message"]


def test_bad_input_gets_clear_errors(client, service, pyannote_sample, tmp_path):
    service.tune(Ingress={"max_upload_bytes": 4 * 1024 * 1024})  # config.yaml's 100 MiB is costly to reach
    url = "/v1/audio/transcriptions"
    error_of(client.post(url, files={"file": ("a.wav", b"")}), 400, "audio_empty")
    error_of(
        client.post(url, files={"file": ("a.mp3", np.random.default_rng(0).bytes(5000))}), 415, "audio_undecodable"
    )
    flac = tmp_path / "s.flac"
    ffmpeg("-i", str(pyannote_sample), str(flac))
    data = flac.read_bytes()
    error_of(client.post(url, files={"file": ("t.flac", data[: len(data) // 2])}), 415, "audio_truncated")
    error_of(client.post(url, files={"file": ("big.wav", b"\0" * (5 * 1024 * 1024))}), 413, "upload_too_large")
    sample = pyannote_sample.read_bytes()
    assert "supported" in error_of(
        client.post(url, files={"file": ("a.wav", sample)}, data={"language": "xx"}), 422, "unsupported_language"
    )
    assert "tiny.en" in error_of(  # the English-only model, named, cannot decode German
        client.post(url, files={"file": ("a.wav", sample)}, data={"language": "de", "model": "tiny.en"}),
        422,
        "unsupported_language",
    )
    error_of(
        client.post(url, files={"file": ("a.wav", sample)}, data={"response_format": "docx"}), 422, "invalid_option"
    )
    error_of(client.post(url, files={"file": ("a.wav", sample)}, data={"temperature": "hot"}), 400, "invalid_field")
    error_of(client.post(url, files={"file": ("a.wav", sample)}, data={"model": "gpt-9"}), 400, "model_not_found")
    error_of(client.post(url, data={"model": "whisper-1"}), 400, "missing_file")
    error_of(
        client.post(
            "/v1/transcribe", files={"file": ("a.wav", sample)}, data={"min_speakers": "3", "max_speakers": "2"}
        ),
        422,
        "invalid_option",
    )
    assert "diarize" in error_of(
        client.post(
            "/v1/transcribe", files={"file": ("a.wav", sample)}, data={"response_format": "rttm", "diarize": "false"}
        ),
        422,
        "invalid_option",
    )
    error_of(client.get("/nope"), 404, "not_found")
    error_of(client.get(url), 405, "method_not_allowed")
    error_of(httpx.post(service.base + url, files={"file": ("a.wav", sample)}), 401, "invalid_api_key")
    # none of that hurt the service
    assert client.get("/healthz").status_code == 200
    ok = client.post(url, files={"file": ("a.wav", sample)})
    assert ok.status_code == 200 and "New Jersey" in ok.json()["text"]


def test_raw_body_upload(client, pyannote_sample):
    response = client.post(
        "/v1/transcribe?response_format=text",
        content=pyannote_sample.read_bytes(),
        headers={"content-type": "audio/wav"},
    )
    assert response.status_code == 200 and "New Jersey" in response.text


def test_overload_answers_503_with_retry_after(client, service, pyannote_sample, long_audio, tmp_path):
    # A 4-minute request holds ~8 chunks in flight for seconds; max_chunks_in_flight is 4,
    # so a request arriving once it holds 4 is turned away at once, and the long one still
    # succeeds. (Its chunks come as the VAD finds them: the first may fly alone for a moment.)
    service.tune(Ingress={"max_chunks_in_flight": 4})
    very_long = tmp_path / "very_long.mp3"
    ffmpeg("-stream_loop", "7", "-i", str(pyannote_sample), "-b:a", "32k", str(very_long))
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(lambda: post_native(client, very_long))
        deadline = time.monotonic() + 120
        while client.get("/healthz").json()["chunks_in_flight"] < 4:
            assert not first.done(), first.result().text
            assert time.monotonic() < deadline
            time.sleep(0.05)
        rejected = post_native(client, long_audio)
        assert first.result().status_code == 200
    assert rejected.status_code == 503, rejected.text
    assert rejected.headers["retry-after"] == "5" and rejected.json()["error"]["code"] == "overloaded"
    assert client.get("/healthz").json()["chunks_in_flight"] == 0


def test_a_short_request_overtakes_a_long_ones_queue(client, pyannote_sample, speak, tmp_path):
    # 10 minutes: ~20 chunks, far more than the two concurrent batches of config.yaml hold.
    # Fair turns give a freed place to the request served least so far, so the short request's
    # one chunk goes into the next batch, not behind every chunk of the long one.
    very_long = tmp_path / "ten_minutes.flac"
    ffmpeg("-stream_loop", "19", "-i", str(pyannote_sample), str(very_long))
    short = speak("A short request arrives while a long one is being transcribed.")
    with ThreadPoolExecutor(max_workers=1) as pool:
        long_request = pool.submit(lambda: post_native(client, very_long, response_format="json"))
        deadline = time.monotonic() + 120
        while client.get("/healthz").json()["transcriber"]["chunks_waiting"] == 0:
            assert not long_request.done(), long_request.result().text
            assert time.monotonic() < deadline, "the long request's chunks never queued"
            time.sleep(0.05)
        overtaking = post_native(client, short, response_format="json")
        still_waiting = client.get("/healthz").json()["transcriber"]["chunks_waiting"]
        long_done = long_request.done()
        assert overtaking.status_code == 200 and "short request" in overtaking.json()["text"].lower()
        assert still_waiting > 0 and not long_done, "the short request waited for the long one's chunks"
        assert long_request.result().status_code == 200
    assert client.get("/healthz").json()["transcriber"]["chunks_waiting"] == 0


def test_user_config_reconfigures_without_restart(service, client):
    before = client.get("/healthz").json()
    configured = config_application()[1]["Transcriber"]["user_config"]["max_batch_size"]
    assert before["transcriber"]["max_batch_size"] == configured and before["limits"]["max_queue_wait_s"] == 120
    service.tune(
        Transcriber={"max_batch_size": 3, "batch_wait_timeout_s": 0.01},
        Ingress={"max_queue_wait_s": 30, "max_chunks_in_flight": 64},
    )  # returns once /healthz reports the new values
    after = client.get("/healthz").json()
    assert after["transcriber"]["max_batch_size"] == 3 and after["transcriber"]["batch_wait_timeout_s"] == 0.01
    assert after["limits"]["max_queue_wait_s"] == 30 and after["limits"]["max_chunks_in_flight"] == 64
    assert after["transcriber"]["pid"] == before["transcriber"]["pid"], "the Transcriber restarted"
    assert after["ingress_pid"] == before["ingress_pid"], "the Ingress restarted"
