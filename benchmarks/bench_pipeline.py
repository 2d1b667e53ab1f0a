"""Question: how fast and how accurate is the in-process pipeline vs plain WhisperX?

Both run over the 40 English dev files in one process, models resident (load time not
counted), same bundled tiny.en int8 model, 2 CPU threads, batch 16, pyannote VAD.

    .venv/bin/python -m benchmarks.bench_pipeline [--vad-step 1.0 ...]
"""

from __future__ import annotations

import argparse
import platform
import time

from benchmarks.common import PlainWhisperX, RunResult, english_dev_set


def run_pipeline(
    paths, audio_seconds, vad_step: float, threads: int | None, workers: int | None, batch_size: int, label: str
) -> RunResult:
    from pipeline.asr import AsrConfig
    from pipeline.config import PipelineConfig
    from pipeline.placement import Placement
    from pipeline.runner import LocalPipeline
    from pipeline.vad import VadOptions

    pipe = LocalPipeline(
        PipelineConfig(
            asr=AsrConfig(num_workers=workers, batch_size=batch_size), vad=VadOptions(step_seconds=vad_step)
        ),
        Placement.local_cpu(threads),
    )
    pipe.transcribe(paths[0])  # warm-up, as the baseline's model is warm after load
    start = time.perf_counter()
    results = list(pipe.transcribe_many(paths))
    wall = time.perf_counter() - start
    return RunResult(label, audio_seconds, wall, [r.transcript.text for r in results])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vad-step", type=float, nargs="+", default=[1.0, 2.5])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    from benchmarks.evaluation import corpus_wer

    refs = english_dev_set()
    paths = [r.path for r in refs]
    audio_seconds = sum(r.duration for r in refs)
    baseline = PlainWhisperX(threads=args.threads, batch_size=args.batch_size)
    baseline.transcribe(paths[0])  # warm-up
    runs = [baseline.run(paths, audio_seconds)]
    for step in args.vad_step:
        for workers in (1, 2):
            shape = f"{workers} worker{'s' if workers > 1 else ''} x {args.threads // workers} thread(s)"
            label = f"pipeline, {shape}, vad step {step:g} s"
            runs.append(run_pipeline(paths, audio_seconds, step, args.threads, workers, args.batch_size, label))
    print(
        f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores; "
        f"{len(paths)} files, {audio_seconds:.1f} s audio"
    )
    print("| run | wall s | x real time | vs plain WhisperX | WER % |")
    print("|---|---|---|---|---|")
    for run in runs:
        wer = 100 * corpus_wer([r.text for r in refs], run.texts)
        print(
            f"| {run.name} | {run.wall_seconds:.1f} | {run.speed:.1f} | {run.speed / runs[0].speed:.2f}x | {wer:.2f} |"
        )


if __name__ == "__main__":
    main()
