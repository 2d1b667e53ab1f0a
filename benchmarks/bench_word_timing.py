"""Question: what does skipping unneeded word timing save? The plan computes word times only
for outputs that show them (whisperx, verbose_json, srt, vtt, tsv) or diarization; OpenAI's
`json` and `text` skip Whisper's cross-attention alignment.

Over the 40 English dev files in one process, models resident: plain WhisperX (which never
times words in its ASR pass), then the library pipeline asked for `whisperx` (words) and for
`json` (text only). Texts must be identical between the two pipeline runs.

    .venv/bin/python -m benchmarks.bench_word_timing [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks.common import PlainWhisperX, english_dev_set


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=2, help="alternate the two formats this many times")
    args = parser.parse_args()

    from benchmarks.evaluation import corpus_wer
    from pipeline.plan import Request
    from pipeline.runner import LocalPipeline

    refs = english_dev_set()
    paths = [r.path for r in refs]
    audio_seconds = sum(r.duration for r in refs)
    baseline = PlainWhisperX()
    baseline.transcribe(paths[0])
    plain = baseline.run(paths, audio_seconds)
    del baseline

    pipe = LocalPipeline()
    pipe.transcribe(paths[0])
    walls: dict[str, list[float]] = {"whisperx": [], "json": []}
    texts: dict[str, list[str]] = {}
    for _ in range(args.repeat):  # alternate, so drift on a shared machine hits both
        for fmt in walls:
            start = time.perf_counter()
            texts[fmt] = [r.transcript.text for r in pipe.transcribe_many(paths, Request(response_format=fmt))]
            walls[fmt].append(time.perf_counter() - start)
    assert texts["json"] == texts["whisperx"], "skipping word timing changed a transcript"

    print(
        f"machine: {os.cpu_count()} cores; {len(paths)} files, {audio_seconds:.1f} s of audio; "
        f"best of {args.repeat} alternating runs\n"
    )
    print("| run | wall s | x real time | vs plain WhisperX | WER % |")
    print("|---|---|---|---|---|")
    print(
        f"| plain WhisperX, sequential | {plain.wall_seconds:.1f} | {plain.speed:.1f} | 1.00x | "
        f"{100 * corpus_wer([r.text for r in refs], plain.texts):.2f} |"
    )
    for fmt, label in (
        ("whisperx", "pipeline, whisperx format (word times)"),
        ("json", "pipeline, json format (word timing skipped)"),
    ):
        wall = min(walls[fmt])
        speed = audio_seconds / wall
        print(
            f"| {label} | {wall:.1f} | {speed:.1f} | {speed / plain.speed:.2f}x | "
            f"{100 * corpus_wer([r.text for r in refs], texts[fmt]):.2f} |"
        )
    saved = 1 - min(walls["json"]) / min(walls["whisperx"])
    print(f"\nskipping word timing saved {100 * saved:.1f} % of the pipeline's wall time")


if __name__ == "__main__":
    main()
