"""The result cache on a real local Ray cluster, over real HTTP on 127.0.0.1: the detached
cache actor (L2, object store, persisted to a directory), the ingress's L1, stage-level reuse,
in-flight deduplication and the cache's failures.

On the session's app (config.yaml's cache, persisted to the session's cache folder). Each test
speaks audio of its own, so no other test's entries answer it; the test that kills the cache
actor runs after the other tests on the app (`kills`).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest


def post(client, path, endpoint="/v1/audio/transcriptions", **fields):
    with open(path, "rb") as f:
        response = client.post(endpoint, files={"file": (path.name, f)}, data=fields)
    assert response.status_code == 200, response.text
    return response


def actor():
    import ray

    from serve.cache_store import ACTOR_NAME, NAMESPACE

    return ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)


def actor_stats() -> dict:
    import ray

    return ray.get(actor().stats.remote(), timeout=30)


def wait_for(condition, what: str, timeout_s: float = 30.0) -> None:
    """Background stores reach the actor a moment after the response: poll, don't sleep."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_same_request_twice_is_a_hit_with_the_same_body(client, speak):
    clip = speak("The same request twice is answered from the cache with the same body.")
    words = {"timestamp_granularities[]": "word"}
    first = post(client, clip, response_format="verbose_json", **words)
    again = post(client, clip, response_format="verbose_json", **words)
    assert first.headers["x-cache"] == "miss" and again.headers["x-cache"] == "hit"
    assert again.content == first.content and first.json()["words"]
    # The other word-timed formats of the same audio are hits too: the format is never part of a key.
    for fmt in ("srt", "vtt"):
        assert post(client, clip, response_format=fmt, **words).headers["x-cache"] == "hit", fmt
    # Segment times and no times need no word timing: the ASR entry, computed once.
    segments = post(client, clip, response_format="verbose_json")
    assert segments.headers["x-cache"] == "miss" and "words" not in segments.json()
    for fmt in ("text", "json", "srt"):
        assert post(client, clip, response_format=fmt).headers["x-cache"] == "hit", fmt
    uncached = post(client, clip, response_format="verbose_json", cache="false", **words)
    assert uncached.headers["x-cache"] == "off" and uncached.json()["text"] == first.json()["text"]


def test_diarization_on_a_cached_transcript_reuses_asr(client, speak):
    path = speak("The cache keeps the words. Diarization can come later and reuse them.")
    plain = post(client, path, "/v1/transcribe")
    assert plain.headers["x-cache"] == "miss" and plain.json()["service"]["chunks"] >= 1
    diarized = post(client, path, "/v1/transcribe", diarize="true")
    service = diarized.json()["service"]
    assert diarized.headers["x-cache"] == "partial"
    assert service["chunks"] == 0 and "asr" not in service["stages"] and "diarize" in service["stages"]
    assert diarized.json()["text"] == plain.json()["text"]
    assert {w.get("speaker") for w in diarized.json()["word_segments"]} != {None}
    assert post(client, path, "/v1/transcribe", diarize="true").headers["x-cache"] == "hit"


def test_identical_concurrent_requests_compute_once(client, speak):
    path = speak("Eight identical requests arrive together and only one of them is computed.")
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: post(client, path, response_format="srt"), range(8)))
    states = [r.headers["x-cache"] for r in responses]
    assert states.count("miss") == 1 and states.count("hit") == 7, states
    assert len({r.content for r in responses}) == 1


def test_eviction_keeps_the_object_store_within_max_bytes(ray_cluster):
    """A separate cache actor with a 1 MiB budget, filled with 3 MiB: its entries and Ray's own
    object-store accounting stay within the budget."""
    import ray
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address

    from serve.cache_store import ResultCache

    def store_bytes() -> int:
        state = get_state_from_address(ray.get_runtime_context().gcs_address)
        return get_memory_info_reply(state).store_stats.object_store_bytes_used

    small = ray.remote(ResultCache).options(num_cpus=0).remote(1 << 20)
    ray.get(small.ping.remote())
    before = store_bytes()
    for i in range(30):
        assert ray.get(small.put.remote(f"asr-{i:040x}", bytes([i]) * (100 << 10)))
    stats = ray.get(small.stats.remote())
    assert stats["bytes"] <= 1 << 20 and stats["entries"] == 10 and stats["evictions"] == 20
    found = ray.get(small.get.remote([f"asr-{i:040x}" for i in range(30)]))
    assert sorted(found) == [f"asr-{i:040x}" for i in range(20, 30)]  # the newest stay
    assert ray.get(found[f"asr-{29:040x}"][0]) == bytes([29]) * (100 << 10)  # large: a ref to read
    assert ray.get(small.put.remote("asr-" + "f" * 40, b"small"))
    assert ray.get(small.get.remote(["asr-" + "f" * 40])) == {"asr-" + "f" * 40: b"small"}  # small: inline
    del found
    deadline = time.monotonic() + 10  # evicted objects are freed asynchronously
    while store_bytes() - before > (1 << 20) + (64 << 10) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store_bytes() - before <= (1 << 20) + (64 << 10)  # Ray's own count, small slack
    assert not ray.get(small.put.remote(f"asr-{99:040x}", b"x" * (2 << 20)))  # can never fit
    ray.kill(small)


@pytest.mark.kills
def test_a_dead_cache_never_fails_a_request_and_comes_back(client, speak):
    import ray

    first_pid = ray.get(actor().ping.remote())
    ray.kill(actor(), no_restart=True)  # gone for good: the ingress must make a new one
    for i in range(3):
        path = speak(f"Request number {i} arrives while the cache is gone.")
        assert post(client, path).headers["x-cache"] in ("miss", "off")
    deadline = time.monotonic() + 60
    while True:  # the ingress looks the actor up again after a second and creates it
        try:
            path = speak("The cache is back.")
            post(client, path)
            if ray.get(actor().ping.remote(), timeout=10) != first_pid:
                break
        except ValueError:  # not created yet
            pass
        assert time.monotonic() < deadline, "the cache actor did not come back"
        time.sleep(1.0)
    before = actor_stats()["entries"]
    path = speak("Stored in the new actor, found there again.")
    post(client, path, response_format="json")
    wait_for(lambda: actor_stats()["entries"] > before, "the new actor to store the entry")


def test_persisted_entries_survive_a_restart_and_a_tampered_one_is_dropped(client, services, speak):
    """The service persists entries as it stores them; a cache actor started anew on the same
    folder (as after a restart) loads the intact ones and drops the one tampered with."""
    import ray

    from serve.cache_store import ResultCache

    folder = services.cache_dir
    intact, tampered = speak("This entry survives the restart."), speak("This entry will be tampered with.")
    before = len(list(folder.glob("*.entry")))
    texts = {p: post(client, p, response_format="text").text for p in (intact, tampered)}
    wait_for(lambda: len(list(folder.glob("*.entry"))) >= before + 2, "both entries to reach the cache folder")
    files = sorted(folder.glob("*.entry"), key=lambda p: p.stat().st_mtime)
    victim = files[-1]  # the newest: the tampered clip's ASR entry
    raw = bytearray(victim.read_bytes())
    raw[-5] ^= 0x01
    victim.write_bytes(bytes(raw))

    restarted = ray.remote(ResultCache).options(num_cpus=0).remote(1 << 30, str(folder))
    try:
        stats = ray.get(restarted.stats.remote(), timeout=60)
        assert stats["dropped"] == 1 and stats["loaded"] == len(files) - 1 == stats["entries"], stats
        assert not victim.exists(), "the tampered file is deleted at load"
    finally:
        ray.kill(restarted)
    assert all(texts.values())
