"""Question: which Transcriber batching (`user_config`: max_batch_size, batch_wait_timeout_s)
gives the service the most throughput on this machine?

One service (config.yaml's settings otherwise), reconfigured in place for each setting; each
time every file is sent once by N concurrent clients to the OpenAI endpoint (`json`). The
workload mixes lengths: the 40 dev files (5-35 s) plus a 106 s and a 115 s recording and a
5-minute one (dev speech laid end to end). Settings are run in turn `--repeats` times
(A B C A B C ...), so drift of the machine spreads over all of them; the table gives the
median and the range.

    .venv/bin/python -m benchmarks.bench_batching [--clients 8] [--repeats 3] [--settings 4:0.01 16:0.2 ...]
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
        default=["2:0.01", "4:0.01", "8:0.01", "4:0.05", "16:0.2"],
        help="max_batch_size:batch_wait_timeout_s",
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import tempfile
    from pathlib import Path

    import httpx

    from benchmarks import launcher
    from benchmarks.bench_service import long_recording
    from benchmarks.common import SPEECH_DIR
    from pipeline.audio import load_audio

    refs = english_dev_set()
    dev = [r.path for r in refs]
    five_minutes = Path(tempfile.mkdtemp()) / "five_minutes.wav"
    long_recording(dev, 300.0, five_minutes)
    longer = [SPEECH_DIR / "diarization" / n for n in ("librispeech_3spk_turns.flac", "voxconverse_akthc.wav")]
    paths = [five_minutes, *longer, *dev]  # the long ones first: the short ones arrive behind them
    audio_seconds = sum(load_audio(p).duration for p in paths)
    service_args = {"cache": {"enabled": False}}  # every request reaches the models
    base = launcher.start(service_args, port=PORT)

    def post(path) -> list[int]:
        with open(path, "rb") as f:
            response = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": (path.name, f)}, timeout=600)
        response.raise_for_status()
        return [int(b) for b in response.headers["x-whisperx-batch-sizes"].split(",") if b]

    walls: dict[str, list[float]] = {s: [] for s in args.settings}
    means: dict[str, list[float]] = {s: [] for s in args.settings}
    try:
        for setting in args.settings * args.repeats:
            size, wait = setting.split(":")
            user_config = {"max_batch_size": int(size), "batch_wait_timeout_s": float(wait)}
            launcher.redeploy(service_args, PORT, {"Transcriber": {"user_config": user_config}})
            time.sleep(8)  # the reconfigure reaches the replica
            post(paths[0])
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.clients) as pool:
                sizes = [b for s in pool.map(post, paths) for b in s]
            walls[setting].append(time.perf_counter() - start)
            means[setting].append(statistics.mean(sizes))
    finally:
        launcher.stop()
        five_minutes.unlink(missing_ok=True)
    print(
        f"{len(paths)} files, {audio_seconds:.1f} s of audio, {args.clients} clients, OpenAI json, "
        f"{args.repeats} runs each\n"
    )
    print("| max_batch_size : wait s | median wall s | range | x real time | mean chunks per batch |")
    print("|---|---|---|---|---|")
    for setting, runs in walls.items():
        wall = statistics.median(runs)
        print(
            f"| {setting} | {wall:.1f} | {min(runs):.1f}-{max(runs):.1f} | {audio_seconds / wall:.1f} | "
            f"{statistics.mean(means[setting]):.2f} |"
        )


if __name__ == "__main__":
    main()
