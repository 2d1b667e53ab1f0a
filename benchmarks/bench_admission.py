"""Question: what does admission by expected wait do to a burst the service cannot serve in time?

40 clients at once, each sending the same ~106 s recording (the dev set's 3-speaker file, or
pyannote's sample looped to 120 s without the dev set) to the CPU default service:
1. no shedding (`max_queue_wait_s` effectively infinite): every request admitted, latencies as
   the queue makes them;
2. `max_queue_wait_s` = BOUND: the excess is refused at once with 503 + Retry-After; each client
   waits as told and tries again until served.
Reported: admitted latency (median, p99, worst), 503s, how long a 503 took, the wall time until
every client was served.

    .venv/bin/python -m benchmarks.bench_admission [--clients 40] [--bound 60]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import SPEECH_DIR

PORT = 18210


def recording(tmp: Path) -> bytes:
    path = SPEECH_DIR / "diarization" / "librispeech_3spk_turns.flac"
    if path.is_file():
        return path.read_bytes()
    import subprocess

    import pyannote.audio

    sample = Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"
    out = tmp / "long.wav"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-stream_loop", "3", "-i", str(sample), str(out)], check=True
    )
    return out.read_bytes()


def burst(base: str, body: bytes, clients: int, retry: bool) -> dict:
    import httpx

    served, refused = [], []

    def one(_: int) -> None:
        with httpx.Client(base_url=base, timeout=1800) as client:
            while True:
                started = time.monotonic()
                response = client.post("/v1/transcribe?response_format=text&language=en", content=body)
                elapsed = time.monotonic() - started
                if response.status_code == 200:
                    served.append(elapsed)
                    return
                assert response.status_code == 503, response.text
                refused.append((elapsed, int(response.headers["retry-after"])))
                if not retry:
                    return
                time.sleep(int(response.headers["retry-after"]))

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, range(clients)))
    wall = time.monotonic() - started
    served.sort()
    return {
        "served": len(served),
        "median": statistics.median(served),
        "p99": served[min(len(served) - 1, int(0.99 * len(served)))],
        "worst": served[-1],
        "503s": len(refused),
        "503_worst_s": max((e for e, _ in refused), default=0.0),
        "retry_after": sorted({r for _, r in refused}),
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--bound", type=float, default=60.0)
    args = parser.parse_args()

    import tempfile

    from benchmarks import launcher

    body = recording(Path(tempfile.mkdtemp()))
    rows = []
    for label, bound, retry in (("no shedding", 1e9, False), (f"max_queue_wait_s={args.bound:.0f}", args.bound, True)):
        base = launcher.start({"max_queue_wait_s": bound, "cache": {"enabled": False}}, port=PORT)
        result = burst(base, body, args.clients, retry)
        launcher.stop()
        rows.append((label, result))
        print(label, result, flush=True)

    print(f"\n{args.clients} clients at once, {len(body) / 1e6:.1f} MB recording each\n")
    print("| admission | served | admitted latency median / p99 / worst (s) | 503s (slowest) | all served after (s) |")
    print("|---|---|---|---|---|")
    for label, r in rows:
        print(
            f"| {label} | {r['served']} | {r['median']:.0f} / {r['p99']:.0f} / {r['worst']:.0f} "
            f"| {r['503s']} ({r['503_worst_s']:.2f} s) | {r['wall']:.0f} |"
        )


if __name__ == "__main__":
    main()
