"""Question: how many replicas (cores, GPUs) does N hours of audio per hour need, and which
stage is the bottleneck as replicas grow?

Each stage of the service is measured alone, in this process, on ONE thread (one core), over
the dev set with its models resident: decode (the ingress), VAD (the ingress or the Vad
deployment), ASR with word times (one Transcriber worker), offline diarization (the Diarizer,
on the first --diarize-files files). Plain WhisperX on one thread is the baseline, same run.
From those speeds (audio seconds per second per core) it prints the cores each stage needs for
N hours of audio per hour, and each stage's share: the stage with the largest share is the
bottleneck. GPU speeds are not measured here (benchmarks/bench_gpu.py on a lent GPU does that);
`--gpu-asr-speed X` adds the rows for an ASR replica of X x real time per GPU.

    .venv/bin/python -m benchmarks.bench_capacity [--diarize-files 10] [--gpu-asr-speed X]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import replace

from benchmarks.common import PlainWhisperX, english_dev_set

LOADS = (10, 100, 1000)  # hours of audio per hour


def timed(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--diarize-files", type=int, default=10)
    parser.add_argument("--gpu-asr-speed", type=float, default=None)
    args = parser.parse_args()

    from pipeline.asr import Transcriber
    from pipeline.audio import AudioLimits, open_audio
    from pipeline.config import PipelineConfig
    from pipeline.diarize import Diarizer, SpeakerCount
    from pipeline.placement import Placement
    from pipeline.plan import Planner, Request
    from pipeline.vad import SpeechDetector, cut

    refs = english_dev_set()
    paths = [r.path for r in refs]
    audio_seconds = sum(r.duration for r in refs)
    one_core = Placement("cpu", cpu_threads=1)
    default = PipelineConfig()
    config = replace(default, asr=replace(default.asr, num_workers=1))  # one CTranslate2 worker, one thread

    data = [p.read_bytes() for p in paths]

    def decode(blob: bytes):
        with open_audio(blob, AudioLimits()) as upload:
            upload.probe()
            return upload.decode()

    audios = [decode(b) for b in data]  # warm
    speeds: dict[str, float] = {"decode (ingress)": audio_seconds / timed(decode, data)}

    vad = SpeechDetector(config.vad, one_core)
    vad.analyze(audios[0])
    maps = []
    speeds["VAD (step 2.5 s)"] = audio_seconds / timed(lambda a: maps.append(vad.analyze(a)), audios)

    transcriber = Transcriber(config.asr, one_core)
    plan = Planner(config, transcriber.card).plan(Request(response_format="verbose_json"))
    chunk_sets = [cut(a, str(i), m.chunks, m.speech) for i, (a, m) in enumerate(zip(audios, maps))]
    transcriber.transcribe_chunks(chunk_sets[0], plan.decode)
    speeds["ASR tiny.en + word times"] = audio_seconds / timed(
        lambda chunks: transcriber.transcribe_chunks(chunks, plan.decode), chunk_sets
    )

    diarizer = Diarizer(config.diarize, one_core)
    few = list(zip(audios, maps))[: args.diarize_files]
    diarizer.diarize(few[0][0], few[0][1].speech, SpeakerCount())
    few_seconds = sum(a.duration for a, _ in few)
    speeds["diarization (segmentation)"] = few_seconds / timed(
        lambda am: diarizer.diarize(am[0], am[1].speech, SpeakerCount()), few
    )

    baseline = PlainWhisperX(threads=1)
    baseline.transcribe(paths[0])
    plain = baseline.run(paths, audio_seconds)

    print(f"machine: {os.cpu_count()} cores; {len(paths)} files, {audio_seconds:.1f} s of audio; one thread each\n")
    print("| stage (one core) | x real time per core |")
    print("|---|---|")
    for stage, speed in speeds.items():
        print(f"| {stage} | {speed:.1f} |")
    print(f"| plain WhisperX (VAD + ASR, no words) | {plain.speed:.1f} |")

    per_hour = sum(1 / s for s in speeds.values())  # core-seconds per audio second, all stages
    print(
        "\n| hours of audio per hour | "
        + " | ".join(f"cores: {s}" for s in speeds)
        + " | total cores | plain WhisperX cores |"
    )
    print("|---|" + "---|" * (len(speeds) + 2))
    for load in LOADS:
        cores = [math.ceil(load / s) for s in speeds.values()]
        print(
            f"| {load} | "
            + " | ".join(str(c) for c in cores)
            + f" | {math.ceil(load * per_hour)} | {math.ceil(load / plain.speed)} |"
        )
    print(
        "\nshare of the service's CPU time per stage (diarized requests): "
        + ", ".join(f"{stage} {100 / s / per_hour:.0f} %" for stage, s in speeds.items())
    )
    if args.gpu_asr_speed:
        vad = speeds["VAD (step 2.5 s)"]
        print(
            f"\nwith ASR on GPUs at {args.gpu_asr_speed:g}x real time each (given, not measured here): "
            f"each GPU needs {args.gpu_asr_speed / vad:.1f} VAD cores and "
            f"{args.gpu_asr_speed / speeds['decode (ingress)']:.2f} decode cores to stay busy"
        )


if __name__ == "__main__":
    main()
