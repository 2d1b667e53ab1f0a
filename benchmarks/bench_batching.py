"""Question: which Transcriber batching (`user_config`: max_batch_size, batch_wait_timeout_s)
gives the service the most throughput on this machine?

One service (config.yaml's settings otherwise), reconfigured in place for each setting; each
time every dev file is sent once by N concurrent clients to the OpenAI endpoint (`json`).

    .venv/bin/python -m benchmarks.bench_batching [--clients 8] [--settings 4:0.01 16:0.2 ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.common import english_dev_set

PORT = 18301


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--settings",
        nargs="+",
        default=["4:0.01", "8:0.1", "16:0.1", "16:0.2", "16:0.3", "16:1.0"],
        help="max_batch_size:batch_wait_timeout_s",
    )
    args = parser.parse_args()

    import httpx

    from benchmarks import launcher

    refs = english_dev_set()
    paths = [r.path for r in refs]
    audio_seconds = sum(r.duration for r in refs)
    service_args = {"cache": {"enabled": False}}  # every request reaches the models
    base = launcher.start(service_args, port=PORT)

    def post(path) -> list[int]:
        with open(path, "rb") as f:
            response = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": (path.name, f)}, timeout=600)
        response.raise_for_status()
        return [int(b) for b in response.headers["x-whisperx-batch-sizes"].split(",") if b]

    rows = []
    try:
        for setting in args.settings:
            size, wait = setting.split(":")
            user_config = {"max_batch_size": int(size), "batch_wait_timeout_s": float(wait)}
            launcher.redeploy(service_args, PORT, {"Transcriber": {"user_config": user_config}})
            time.sleep(8)  # the reconfigure reaches the replica
            post(paths[0])
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.clients) as pool:
                sizes = [b for s in pool.map(post, paths) for b in s]
            wall = time.perf_counter() - start
            rows.append((setting, wall, statistics.mean(sizes)))
    finally:
        launcher.stop()
    print(f"{len(paths)} files, {audio_seconds:.1f} s of audio, {args.clients} clients, OpenAI json\n")
    print("| max_batch_size : wait s | wall s | x real time | mean chunks per batch |\n|---|---|---|---|")
    for setting, wall, mean in rows:
        print(f"| {setting} | {wall:.1f} | {audio_seconds / wall:.1f} | {mean:.2f} |")


if __name__ == "__main__":
    main()
