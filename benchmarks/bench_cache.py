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

    from benchmarks import launcher
    from benchmarks.common import PlainWhisperX, english_dev_set
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

            client.get("/v1/models")
            rows.append(
                (
                    "HTTP floor: GET /v1/models (no body, no work)",
                    [_timed(lambda: client.get("/v1/models")) for _ in range(args.hits)],
                )
            )
            post(data, cache="false")  # warm
            misses = [_timed(lambda: post(data, cache="false")) for _ in range(args.misses)]
            rows.append(("service, computed (cache=false)", misses))
            first = _timed(lambda: post(data))  # the miss that fills the cache
            assert post(data).headers["x-cache"] == "hit"
            rows.append(("service, hit in the ingress's L1", [_timed(lambda: post(data)) for _ in range(args.hits)]))
            raw = f"/v1/transcribe?response_format={args.format}"
            client.post(raw, content=data)
            rows.append(
                (
                    "service, hit in L1, raw body (no multipart)",
                    [_timed(lambda: client.post(raw, content=data)) for _ in range(args.hits)],
                )
            )
            client.post("/v1/transcribe", files={"file": ("sample.wav", data)})  # the native format's miss
            native = client.post("/v1/transcribe", files={"file": ("sample.wav", data)}).json()
            assert native["service"]["cache"] == "hit"
            ingress_ms = native["service"]["seconds"]["total"] * 1000

            launcher.redeploy({"cache": {"enabled": True, "l1_entries": 0}}, PORT)
            _wait_for_l2_only(client, base)
            assert post(data).headers["x-cache"] == "hit"
            rows.append(
                ("service, hit in the cache actor (L1 off)", [_timed(lambda: post(data)) for _ in range(args.hits)])
            )

            actor = ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
            ray.get(actor.clear.remote())
            refs = english_dev_set()[: args.entries]
            for ref in refs:  # verbose_json: entries with word times, the larger kind
                post(ref.path.read_bytes(), ref.path.name, response_format="verbose_json")
            deadline = time.monotonic() + 30  # background stores reach the actor
            while ray.get(actor.stats.remote())["entries"] < len({r.path.read_bytes() for r in refs}):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            stats = ray.get(actor.stats.remote())
            with_entries = _settled_store()
            ray.get(actor.clear.remote())
            without_entries = _settled_store()
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
    print(f"\nA hit's own time in the ingress (native endpoint, `service.seconds.total`): {ingress_ms:.1f} ms")
    entries, cache_bytes = stats["entries"], stats["bytes"]
    print(
        f"\n{len(refs)} dev-set files ({sum(r.duration for r in refs):.0f} s of audio), verbose_json -> {entries} "
        f"entries, {cache_bytes / 1024:.1f} KiB by the cache actor's count "
        f"({cache_bytes / max(1, entries) / 1024:.2f} KiB per entry); in Ray's own object-store accounting "
        f"clearing the cache freed {(with_entries[0] - without_entries[0]) / 1024:.1f} KiB and "
        f"{with_entries[1] - without_entries[1]} objects"
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


def _settled_store() -> tuple[int, int]:
    """Ray's own count (bytes, objects) of the object store once it stops changing: the last
    requests' audio objects are freed a moment after their responses."""
    import ray
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address

    def read() -> tuple[int, int]:
        stats = get_memory_info_reply(get_state_from_address(ray.get_runtime_context().gcs_address)).store_stats
        return stats.object_store_bytes_used, stats.num_local_objects

    last = read()
    for _ in range(30):
        time.sleep(1)
        now = read()
        if now == last:
            return now
        last = now
    return last


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
