"""Question: what does a result-cache hit cost over HTTP compared with computing the result,
and how many object-store bytes do N cached entries take?

One service on the embedded defaults (config.yaml's), the same file sent again and again:
- plain WhisperX on that file in-process (the baseline: no cache, no HTTP);
- misses: the service computing it (`cache=false`, so every request computes);
- hits: the same request answered by the ingress's L1, then (redeployed with `l1_entries: 0`)
  by the cache actor in the object store;
then N distinct dev-set files through the service, and the cache actor's bytes next to Ray's own
object-store accounting.

    .venv/bin/python -m benchmarks.bench_cache [--hits 200] [--misses 5] [--entries 40]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

PORT = 18311


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hits", type=int, default=200)
    parser.add_argument("--misses", type=int, default=5)
    parser.add_argument("--entries", type=int, default=40, help="distinct dev-set files for the bytes row")
    parser.add_argument("--format", default="json", help="OpenAI response_format")
    args = parser.parse_args()

    import httpx
    import pyannote.audio
    import ray

    from benchmarks.common import PlainWhisperX, english_dev_set
    from serve import launcher
    from serve.cache_store import ACTOR_NAME, NAMESPACE

    sample = Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"
    data = sample.read_bytes()

    baseline = _plain_whisperx(PlainWhisperX, sample, args.misses)

    service_args = {"cache": {"enabled": True}}
    base = launcher.start(service_args, port=PORT)
    rows = [("plain WhisperX in-process (no cache, no HTTP)", baseline)]
    try:
        with httpx.Client(base_url=base, timeout=600) as client:

            def post(body: bytes, name: str = "sample.wav", **fields) -> httpx.Response:
                response = client.post(
                    "/v1/audio/transcriptions",
                    files={"file": (name, body)},
                    data={"response_format": args.format, **fields},
                )
                response.raise_for_status()
                return response

            post(data, cache="false")  # warm
            misses = [_timed(lambda: post(data, cache="false")) for _ in range(args.misses)]
            rows.append(("service, computed (cache=false)", misses))
            first = _timed(lambda: post(data))  # the miss that fills the cache
            assert post(data).headers["x-cache"] == "hit"
            rows.append(("service, hit in the ingress's L1", [_timed(lambda: post(data)) for _ in range(args.hits)]))

            launcher.redeploy({"cache": {"enabled": True, "l1_entries": 0}}, PORT)
            _wait_for_l2_only(client, base)
            assert post(data).headers["x-cache"] == "hit"
            rows.append(
                ("service, hit in the cache actor (L1 off)", [_timed(lambda: post(data)) for _ in range(args.hits)])
            )

            actor = ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
            before_stats, before_store = ray.get(actor.stats.remote()), _store_bytes()
            refs = english_dev_set()[: args.entries]
            for ref in refs:
                post(ref.path.read_bytes(), ref.path.name)
            time.sleep(2)  # background stores reach the actor
            after_stats, after_store = ray.get(actor.stats.remote()), _store_bytes()
    finally:
        launcher.stop()

    print(
        f"`{sample.name}` (30 s), OpenAI `{args.format}`, sequential requests over 127.0.0.1; "
        f"first miss {first:.3f} s\n"
    )
    print("| path | requests | p50 ms | p90 ms | x faster than computed (p50) |\n|---|---|---|---|---|")
    computed = statistics.median(misses)
    for label, times in rows:
        p50, p90 = statistics.median(times), _percentile(times, 0.9)
        print(f"| {label} | {len(times)} | {p50 * 1000:.1f} | {p90 * 1000:.1f} | {computed / p50:.0f} |")
    entries = after_stats["entries"] - before_stats["entries"]
    cache_bytes = after_stats["bytes"] - before_stats["bytes"]
    print(
        f"\n{len(refs)} distinct dev-set files ({sum(r.duration for r in refs):.0f} s of audio) -> {entries} new "
        f"entries, {cache_bytes / 1024:.1f} KiB by the cache actor's count "
        f"({cache_bytes / max(1, entries) / 1024:.2f} KiB per entry); Ray's object store grew "
        f"{(after_store - before_store) / 1024:.1f} KiB"
    )


def _plain_whisperx(plain_class, sample: Path, runs: int) -> list[float]:
    plain = plain_class()
    plain.transcribe(sample)  # warm
    return [_timed(lambda: plain.transcribe(sample)) for _ in range(runs)]


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _store_bytes() -> int:
    import ray
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address

    state = get_state_from_address(ray.get_runtime_context().gcs_address)
    return get_memory_info_reply(state).store_stats.object_store_bytes_used


def _wait_for_l2_only(client, base: str, timeout_s: float = 300) -> None:
    """The redeploy replaces the ingress; wait until the new one (L1 off) answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            health = client.get("/healthz")
            if health.status_code == 200 and (health.json().get("cache") or {}).get("l1_max_entries") == 0:
                return
        except Exception:  # noqa: BLE001 - replicas restarting
            pass
        time.sleep(1)
    raise TimeoutError(f"{base} did not come back with the L1 off")


if __name__ == "__main__":
    main()
