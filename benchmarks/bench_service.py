"""Question: what does the service add? Throughput with many concurrent clients vs plain
WhisperX sequential, and single-request latency vs the library call.

1. plain WhisperX, files one after another (models resident), in this process;
2. the library pipeline configured as the service is, one file at a time (latency baseline);
3. the service (config.yaml's settings, local Ray cluster on 127.0.0.1): every file once
   with N concurrent clients (throughput), for each endpoint: the native one with WhisperX's
   full result (word times) and OpenAI's default `json` (text only: the plan skips word
   timing); then the files one at a time (latency, native).
Baselines run before the service starts, so they have the machine to themselves.

    .venv/bin/python -m benchmarks.bench_service [--clients 8 16] [--latency-files 12]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.common import PlainWhisperX, english_dev_set

PORT = 18200


def config_yaml_user_config() -> dict:
    """The Transcriber's batching as config.yaml sets it (what `serve run config.yaml` serves)."""
    import yaml

    from benchmarks.common import REPO

    app = yaml.safe_load((REPO / "config.yaml").read_text())["applications"][0]
    return next(d["user_config"] for d in app["deployments"] if d["name"] == "Transcriber")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--latency-files", type=int, default=12)
    parser.add_argument("--vad-step", type=float, default=2.5)
    args = parser.parse_args()

    import httpx

    from benchmarks import launcher
    from pipeline.config import PipelineConfig
    from pipeline.runner import LocalPipeline
    from pipeline.vad import VadOptions

    refs = english_dev_set()
    paths = [r.path for r in refs]
    audio_seconds = sum(r.duration for r in refs)
    latency_paths = sorted(paths, key=lambda p: p.stat().st_size)[-args.latency_files :]

    baseline = PlainWhisperX()
    baseline.transcribe(paths[0])
    plain = baseline.run(paths, audio_seconds)
    del baseline

    library = LocalPipeline(PipelineConfig(vad=VadOptions(step_seconds=args.vad_step)))
    library.transcribe(paths[0])
    library_latency = []
    for path in latency_paths:
        start = time.perf_counter()
        library.transcribe(path)
        library_latency.append(time.perf_counter() - start)
    del library

    endpoints = {
        "native whisperx (words)": "/v1/transcribe",
        "OpenAI json (no word timing)": "/v1/audio/transcriptions",
    }
    base = launcher.start(
        {"vad_step_seconds": args.vad_step, "cache": {"enabled": False}},  # models, not the cache
        port=PORT,
        deployments={"Transcriber": {"user_config": config_yaml_user_config()}},
    )
    try:
        with httpx.Client(base_url=base, timeout=900) as client:

            def post(path, route="/v1/transcribe"):
                with open(path, "rb") as f:
                    response = client.post(route, files={"file": (path.name, f)})
                response.raise_for_status()
                return [int(b) for b in response.headers["x-whisperx-batch-sizes"].split(",") if b]

            for route in endpoints.values():
                post(paths[0], route)  # warm-up
            throughput = {}
            batches = {}
            for clients in args.clients:
                for label, route in endpoints.items():
                    start = time.perf_counter()
                    with ThreadPoolExecutor(max_workers=clients) as pool:
                        sizes = [b for s in pool.map(post, paths, [route] * len(paths)) for b in s]
                    throughput[(clients, label)] = time.perf_counter() - start
                    batches[(clients, label)] = (statistics.mean(sizes), max(sizes))
            service_latency = []
            for path in latency_paths:
                start = time.perf_counter()
                post(path)
                service_latency.append(time.perf_counter() - start)
    finally:
        launcher.stop()

    print(
        f"machine: {os.cpu_count()} cores; {len(paths)} files, {audio_seconds:.1f} s of audio; "
        f"vad step {args.vad_step:g} s\n"
    )
    print("| run | wall s | x real time | vs plain WhisperX | mean / max chunks per batch |")
    print("|---|---|---|---|---|")
    print(f"| plain WhisperX, sequential | {plain.wall_seconds:.1f} | {plain.speed:.1f} | 1.00x | 1 file at a time |")
    for (clients, label), wall in throughput.items():
        speed = audio_seconds / wall
        mean, top = batches[(clients, label)]
        print(
            f"| service, {clients} concurrent clients, {label} | {wall:.1f} | {speed:.1f} | "
            f"{speed / plain.speed:.2f}x | {mean:.2f} / {top} |"
        )
    lib, svc = statistics.median(library_latency), statistics.median(service_latency)
    print(
        f"\nsingle request, {len(latency_paths)} longest files one at a time: library median {lib:.3f} s, "
        f"service median {svc:.3f} s (HTTP + Ray), ratio {svc / lib:.2f}x; "
        f"means {statistics.mean(library_latency):.3f} / {statistics.mean(service_latency):.3f} s"
    )


if __name__ == "__main__":
    main()
