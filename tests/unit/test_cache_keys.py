"""Result-cache keys, entries and their bookkeeping: pure logic, no Ray."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from pipeline.align import AlignConfig
from pipeline.cache_entries import (
    AsrEntry,
    Reused,
    decode_asr,
    decode_turns,
    encode_asr,
    encode_turns,
    reuse,
)
from pipeline.cache_keys import audio_digest, stage_keys
from pipeline.chunking import ServerVad
from pipeline.config import PipelineConfig
from pipeline.diarize import SpeakerCount
from pipeline.models import AsrCard
from pipeline.plan import Planner, Request, run_sync
from pipeline.schema import ChunkResult, Segment, Turn, Word
from serve.cache_client import CacheClient, CacheSettings, LocalLru

EN = AsrCard("bundled/tiny.en", False, ("en",), "sha256:abc")
MULTI = AsrCard("large-v3-turbo", True, ("en", "de"), "revision:" + "0" * 40)
AUDIO = audio_digest(b"some audio bytes")


def keys(request=Request(), card=EN, config=PipelineConfig(), audio=AUDIO, identity=("w", "int8")):
    weights, compute_type = identity  # what the Transcriber reports of the loaded model
    return stage_keys(Planner(config, replace(card, weights=weights, compute_type=compute_type)).plan(request), audio)


def test_the_output_format_never_enters_a_key():
    timed = {keys(Request(response_format=f)).asr for f in ("whisperx", "srt", "vtt", "verbose_json", "tsv")}
    untimed = {keys(Request(response_format=f)).asr for f in ("json", "text")}
    # Word timing is in the key: sentence cuts change how text joins in ja/zh.
    assert len(timed) == 1 and len(untimed) == 1 and timed != untimed


@pytest.mark.parametrize(
    "change",
    [
        dict(audio=audio_digest(b"other audio")),
        dict(identity=("w", "float32")),  # compute type the Transcriber runs
        dict(identity=("other weights", "int8")),
        dict(request=Request(initial_prompt="Names: Ada.")),
        dict(request=Request(beam_size=1)),
        dict(config=replace(PipelineConfig(), vad=replace(PipelineConfig().vad, onset=0.6))),
        dict(card=replace(EN, model_id="bundled/base.en")),
        dict(request=Request(chunking=ServerVad())),  # OpenAI's chunking_strategy server_vad
        dict(request=Request(chunking=ServerVad(silence_duration_ms=1000))),
    ],
)
def test_what_changes_asr_changes_its_key(change):
    assert keys(**change).asr != keys().asr


def test_a_given_language_is_part_of_the_key_and_a_detected_one_is_not():
    detected = keys(Request(), card=MULTI).asr
    assert keys(Request(language="de"), card=MULTI).asr != detected
    assert keys(Request(language="en"), card=EN).asr == keys(Request(), card=EN).asr  # English-only: en anyway


def test_diarization_keys_ignore_decoding_and_asr_keys_ignore_diarization():
    plain, diarized = keys(Request()), keys(Request(diarize=True))
    assert plain.diarize is None and diarized.diarize
    assert plain.asr == diarized.asr  # diarization turned on later reuses the ASR
    assert keys(Request(diarize=True, initial_prompt="x")).diarize == diarized.diarize
    assert keys(Request(speakers=SpeakerCount(num_speakers=2))).diarize != diarized.diarize
    assert len({plain.result, diarized.result}) == 2


def test_align_key_follows_the_asr_and_the_align_config():
    config = replace(PipelineConfig(), align=AlignConfig(model="default"))
    aligned = keys(Request(), config=config)
    assert aligned.align and keys(Request(align=False), config=config).align is None
    other = replace(config, align=AlignConfig(model="/models/w2v"))
    assert keys(Request(), config=other).align != aligned.align
    assert keys(Request(), config=config, audio=audio_digest(b"x")).align != aligned.align


def test_sampling_is_not_cached_and_torch_runtime_is_not_in_keys():
    assert keys(Request(temperature=0.4)) is None
    fast = PipelineConfig().with_torch({"vad": "float16"}, compile=True)
    assert keys(config=fast) == keys()


def _entry() -> AsrEntry:
    words = [Word("Hello", 0.5, 0.9, 0.8), Word("world.", 1.0, 1.4, 0.7)]
    chunk = ChunkResult("req", 0, "en", [Segment(0.5, 1.4, " Hello world.", words, -0.2)], 0.4, 2.0)
    return AsrEntry(duration=3.0, language="en", language_detected=False, speech=[(0.4, 2.0)], chunks=[chunk])


def test_entries_round_trip_as_json_and_damaged_ones_are_ignored():
    entry = _entry()
    assert decode_asr(encode_asr(entry)) == entry
    turns = [Turn(0.0, 1.5, "SPEAKER_00"), Turn(1.5, 3.0, "SPEAKER_01")]
    assert decode_turns(encode_turns(turns)) == turns
    json.loads(encode_asr(entry))  # plain JSON, nothing executable
    k = keys(Request(diarize=True))
    good = reuse(k, {k.asr: encode_asr(entry), k.diarize: encode_turns(turns)})
    assert good.asr == entry and good.turns == turns
    bad = reuse(k, {k.asr: b"\x80not json", k.diarize: b'{"turns": 3}'})
    assert bad.asr is None and bad.turns is None


def test_what_a_request_still_runs():
    config = replace(PipelineConfig(), align=AlignConfig(model="default"))
    planner = Planner(config, MULTI)
    plan = planner.plan(Request(diarize=True))  # language detected; alignment may run
    assert plan.to_run() == ("asr", "align", "diarize") and plan.cache_state == "miss"
    assert "cache" not in plan.stages()
    asr = replace(_entry(), language="de", language_detected=True)
    partial = plan.with_cached(Reused(asr=asr))
    assert partial.to_run() == ("align", "diarize") and partial.cache_state == "partial"
    assert partial.language == "de" and partial.language_detected
    assert partial.stages() == ("decode", "align", "diarize", "merge", "render", "cache")
    full = plan.with_cached(Reused(asr=asr, aligned=[], turns=[Turn(0, 1, "A")]))
    assert full.to_run() == () and full.cache_state == "hit"
    assert full.stages() == ("decode", "merge", "render", "cache")
    # No alignment model for the detected language: nothing left to align.
    unalignable = plan.with_cached(Reused(asr=replace(asr, language="xx"), turns=[]))
    assert unalignable.to_run() == ()
    silent = planner.plan(Request()).with_cached(Reused(asr=replace(asr, chunks=[])))
    assert silent.to_run() == ()  # no speech: nothing to align


def test_local_lru_bounds_entries_and_bytes():
    lru = LocalLru(max_entries=3, max_bytes=10)
    for i in range(4):
        lru.put(f"k{i}", b"ab")
    assert len(lru) == 3 and lru.get("k0") is None and lru.get("k1") == b"ab"
    lru.put("big", b"x" * 8)  # evicts the least recently used (k2, k3; k1 was just read) until 10 fit
    assert lru.bytes <= 10 and lru.get("big") and lru.get("k1") and lru.get("k2") is None
    lru.put("huge", b"x" * 11)
    assert lru.get("huge") is None


def test_identical_work_in_flight_runs_once_and_failures_reach_every_waiter():
    client = CacheClient(CacheSettings(), connect=lambda: None)
    runs = []

    async def compute():
        runs.append(1)
        await asyncio.sleep(0.05)
        return "transcript"

    async def failing():
        runs.append(1)
        await asyncio.sleep(0.05)
        raise ValueError("bad audio")

    async def main():
        together = await asyncio.gather(*(client.once("k", compute) for _ in range(8)))
        assert [r for r, _ in together] == ["transcript"] * 8 and sum(s for _, s in together) == 7
        assert len(runs) == 1
        outcomes = await asyncio.gather(*(client.once("k", failing) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(o, ValueError) for o in outcomes) and len(runs) == 2

    asyncio.run(main())


def test_persisted_entries_verify_their_checksum(tmp_path):
    from serve.cache_store import _read, _write

    key = "asr-" + "a" * 40
    _write(tmp_path / f"{key}.entry", key, b'{"x": 1}')
    assert _read(tmp_path / f"{key}.entry", key) == b'{"x": 1}'
    raw = (tmp_path / f"{key}.entry").read_bytes()
    (tmp_path / f"{key}.entry").write_bytes(raw.replace(b'{"x": 1}', b'{"x": 2}'))
    assert _read(tmp_path / f"{key}.entry", key) is None  # tampered payload
    (tmp_path / f"{key}.entry").write_bytes(raw)
    assert _read(tmp_path / f"{key}.entry", "asr-" + "b" * 40) is None  # renamed: key mismatch
    (tmp_path / f"{key}.entry").write_bytes(raw[:-3])
    assert _read(tmp_path / f"{key}.entry", key) is None  # truncated


def test_a_slow_or_broken_cache_is_a_miss_and_is_looked_up_again_later(monkeypatch):
    class Method:
        def __init__(self, behaviour):
            self.behaviour = behaviour

        def remote(self, *args):
            return self.behaviour()

    async def answer():
        return None

    class SlowActor:
        get = Method(lambda: asyncio.sleep(30))  # never answers within timeout_s
        put = Method(lambda: asyncio.sleep(30))
        configure = Method(answer)

    connects = []

    def connect():
        connects.append(1)
        return SlowActor()

    monkeypatch.setattr("serve.cache_client.RECONNECT_AFTER_S", 0.2)
    client = CacheClient(CacheSettings(timeout_s=0.05), connect=connect)

    async def main():
        await client.connect()
        assert client._actor is not None
        client.store("asr-" + "1" * 40, b"kept in L1")
        assert await client.get(["asr-" + "1" * 40, "asr-" + "2" * 40]) == {"asr-" + "1" * 40: b"kept in L1"}
        assert client.errors >= 1 and client._actor is None  # the lookup timed out: a miss
        assert await client.get(["asr-" + "2" * 40]) == {}  # paused: not even asked
        assert len(connects) == 1
        await asyncio.sleep(0.5)  # the pause is over: the next lookup reconnects (in a thread)
        await client.get(["asr-" + "3" * 40])
        await asyncio.sleep(0.1)
        assert len(connects) == 2

    asyncio.run(main())


def test_a_cancelled_first_request_lets_the_next_identical_one_compute():
    client = CacheClient(CacheSettings(), connect=lambda: None)
    started = []

    async def compute():
        started.append(1)
        await asyncio.sleep(0.2)
        return "transcript"

    async def main():
        first = asyncio.create_task(client.once("k", compute))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(client.once("k", compute))
        await asyncio.sleep(0.05)
        first.cancel()  # its client went away
        assert await second == ("transcript", False) and len(started) == 2

    asyncio.run(main())


def test_segments_come_from_the_cached_alignment_else_from_asr():
    plan = Planner(PipelineConfig(), EN).plan(Request())
    entry = _entry()

    def align(results):
        raise AssertionError("nothing to align: the plan has no alignment model")

    cached = plan.with_cached(Reused(asr=entry))
    assert run_sync(cached.timed_segments(cached.asr_results(), align)) == plan.chunk_segments(entry.chunks)
    aligned = [Segment(0.5, 1.4, "Hello world.")]
    with_alignment = plan.with_cached(Reused(asr=entry, aligned=aligned))
    assert run_sync(with_alignment.timed_segments(with_alignment.asr_results(), align)) == aligned
    assert run_sync(plan.timed_segments(plan.asr_results(entry.chunks), align)) == plan.chunk_segments(entry.chunks)


def test_the_plan_steps_take_synchronous_and_asynchronous_means():
    config = replace(PipelineConfig(), align=AlignConfig(model="default"))
    plan = Planner(config, MULTI).plan(Request())
    spans = [(0.0, 5.0), (5.0, 30.0), (30.0, 31.0)]
    votes = []

    def detect(sample, model, candidates):
        votes.append(sample)
        assert candidates == ()  # no languages[]: any language
        assert model == MULTI.model_id  # the multilingual model identifies the language
        return "de", 0.95

    async def detect_async(sample, model, candidates):
        return "fr", 0.95

    detected = run_sync(plan.detect_language(spans, detect))  # the first chunk is too short to decide alone
    assert (
        detected.language == "de"
        and detected.language_detected
        and votes == [[spans[i] for i in plan.language_sample(spans)]]
    )
    assert asyncio.run(plan.detect_language(spans, detect_async)).language == "fr"
    given = Planner(config, MULTI).plan(Request(language="en"))
    assert run_sync(given.detect_language(spans, detect)).language == "en" and len(votes) == 1
    segments = [Segment(0.0, 1.0, "Hallo.")]

    async def align(results):
        return segments

    results = _entry().chunks
    assert asyncio.run(detected.timed_segments(results, align)) == segments
    with pytest.raises(RuntimeError, match="suspended"):
        run_sync(detected.timed_segments(results, lambda r: asyncio.sleep(0)))
