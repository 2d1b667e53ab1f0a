"""Question: where should the VAD run, and what does one core of it carry?

1. The VAD's own speed, per core: SpeechDetector over the dev set with 1 and 2 threads, at the
   service's VAD step (2.5 s) and WhisperX's (1 s). Audio seconds scored per second on one
   thread is the most audio one ingress replica's VAD thread can admit: the cap the issue names.
2. Plain WhisperX over the same files, sequential (the baseline, same run).
3. The service twice per placement, alternating (ingress, deployment, ingress, deployment):
   the dev set with N concurrent clients on the native endpoint; wall time and the mean VAD
   seconds per request as the ingress saw them (the Vad deployment's include its call).

    .venv/bin/python -m benchmarks.bench_vad_placement [--clients 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.common import PlainWhisperX, english_dev_set

PORT = 18210


def vad_speed(paths, audio_seconds: float, step: float, threads: int) -> float:
    """Audio seconds the VAD scores per wall second, models resident."""
    from pipeline.audio import load_audio
    from pipeline.placement import Placement
    from pipeline.vad import SpeechDetector, VadOptions

    detector = SpeechDetector(VadOptions(step_seconds=step), Placement("cpu", cpu_threads=threads))
    audios = [load_audio(p) for p in paths]
    detector.analyze(audios[0])  # warm-up
    start = time.perf_counter()
    for audio in audios:
        detector.analyze(audio)
    return audio_seconds / (time.perf_counter() - start)


def service_run(paths, placement: str, clients: int) -> tuple[float, float]:
    """(wall seconds for every file once, mean VAD seconds per request)."""
    import httpx

    from benchmarks import launcher

    base = launcher.start({"vad_placement": placement, "cache": {"enabled": False}}, port=PORT)
    try:
        with httpx.Client(base_url=base, timeout=900) as client:

            def post(path):
                with open(path, "rb") as f:
                    response = client.post("/v1/transcribe", files={"file": (path.name, f)})
                response.raise_for_status()
                return response.json()["service"]["seconds"].get("vad", 0.0)

            post(paths[0])  # warm-up
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=clients) as pool:
                vad_seconds = list(pool.map(post, paths))
            return time.perf_counter() - start, statistics.mean(vad_seconds)
    finally:
        launcher.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    refs = english_dev_set()
    paths = [r.path for r in refs]
    audio_seconds = sum(r.duration for r in refs)

    speeds = {
        (step, threads): vad_speed(paths, audio_seconds, step, threads) for step in (2.5, 1.0) for threads in (1, 2)
    }

    baseline = PlainWhisperX()
    baseline.transcribe(paths[0])
    plain = baseline.run(paths, audio_seconds)
    del baseline

    runs: dict[str, list[tuple[float, float]]] = {"ingress": [], "deployment": []}
    for _ in range(args.rounds):
        for placement in runs:
            runs[placement].append(service_run(paths, placement, args.clients))

    print(f"machine: {os.cpu_count()} cores; {len(paths)} files, {audio_seconds:.1f} s of audio\n")
    print("| VAD step s | threads | audio s scored per s (x real time) | per thread |")
    print("|---|---|---|---|")
    for (step, threads), speed in speeds.items():
        print(f"| {step:g} | {threads} | {speed:.0f} | {speed / threads:.0f} |")
    print(
        f"\n| run ({args.clients} concurrent clients, native endpoint) | wall s per round | "
        "x real time (best) | vs plain WhisperX | mean VAD s per request |"
    )
    print("|---|---|---|---|---|")
    print(f"| plain WhisperX, sequential | {plain.wall_seconds:.1f} | {plain.speed:.1f} | 1.00x | |")
    for placement, results in runs.items():
        walls = [w for w, _ in results]
        best = audio_seconds / min(walls)
        vad = statistics.mean(v for _, v in results)
        label = "VAD in the ingress" if placement == "ingress" else "VAD deployment"
        print(
            f"| service, {label} | {' / '.join(f'{w:.1f}' for w in walls)} | {best:.1f} | "
            f"{best / plain.speed:.2f}x | {vad:.3f} |"
        )


if __name__ == "__main__":
    main()
