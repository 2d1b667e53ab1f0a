"""Question: how far ahead of plain WhisperX can the service be on this machine at most?

The service does the same compute as plain WhisperX per file (decode, VAD, Whisper's encoder and
beam search) and wins by keeping every core busy. So its ceiling on N cores is plain WhisperX's
wall time over (the CPU seconds of that compute, on one thread each) / N: every core decoding all
the time, with no HTTP, Ray, formats or scheduling. This script measures both in one process:

1. plain WhisperX over the dev set (as `bench_service --quick` runs it), before and after;
2. the service's own stages on one thread each, file after file, over the same files, with the
   CPU seconds of each: decode (ffmpeg children included), VAD, the encoder and the beam search
   (CTranslate2, int8, as config.yaml's cpu profile runs them; `verbose_json`: no word times).

    .venv/bin/python -m benchmarks.bench_ceiling [--mixed]
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

from benchmarks.common import PlainWhisperX, english_dev_set


def cpu_now() -> float:
    """This process's CPU seconds, its finished children (ffmpeg) included."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class StageClock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def timed(self, stage: str, fn, *args):
        start = cpu_now()
        out = fn(*args)
        self.seconds[stage] = self.seconds.get(stage, 0.0) + cpu_now() - start
        return out


@dataclass
class Compute:
    """The service's own compute over some files, one thread, file after file."""

    seconds: dict[str, float]  # CPU seconds per stage
    chunks: int
    wall_seconds: float

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def ceiling_wall(self, cores: int) -> float:
        """Wall seconds with every core doing nothing but this compute."""
        return self.total / cores

    def table(self) -> str:
        rows = ["| the service's stage, one thread | CPU s | per chunk s |", "|---|---|---|"]
        rows += [f"| {stage} | {s:.1f} | {s / self.chunks:.3f} |" for stage, s in self.seconds.items()]
        rows.append(
            f"| **all of it** (one thread: {self.wall_seconds:.1f} s wall) | **{self.total:.1f}** | "
            f"{self.total / self.chunks:.3f} |"
        )
        return "\n".join(rows)


def service_compute(paths: list, split_encoder: bool = True) -> Compute:
    """Decode, VAD, encoder and beam search of every file on one thread (CTranslate2 int8,
    config.yaml's cpu profile; `verbose_json`, language given: no word times, no vote).
    `split_encoder`: the encoder's share apart (an extra encoder pass per chunk, not counted)."""
    import torch

    from pipeline.asr import AsrConfig, DecodeOptions, Transcriber
    from pipeline.audio import open_audio
    from pipeline.placement import Placement
    from pipeline.vad import SpeechDetector

    one_thread = Placement(device="cpu", cpu_threads=1)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        vad = SpeechDetector(placement=one_thread)
        asr = Transcriber(AsrConfig(num_workers=1, batch_size=1), one_thread)
        options = DecodeOptions(language="en", word_timestamps=False)
        clock = StageClock()
        chunk_count = 0

        def encode_and_search(chunk):
            return asr.transcribe_chunks([chunk], options)

        asr.transcribe_chunks(vad.chunks(open_audio(paths[0]).decode(), "warm-up"), options)
        wall_start = time.perf_counter()
        for i, path in enumerate(paths):
            audio = clock.timed("decode (ffmpeg or libsndfile)", lambda p: open_audio(p).decode(), path)
            chunks = clock.timed("VAD (pyannote segmentation, step 2.5 s)", vad.chunks, audio, f"f{i}")
            chunk_count += len(chunks)
            for chunk in chunks:
                # The encoder alone, then the whole decode: the difference is the beam search.
                if split_encoder:
                    features = clock.timed("Whisper encoder (CTranslate2)", asr._encode, [chunk])
                    del features
                clock.timed("encoder + beam search, results", encode_and_search, chunk)
        wall = time.perf_counter() - wall_start
    finally:
        torch.set_num_threads(threads_before)
    if split_encoder:
        encoder = clock.seconds.pop("Whisper encoder (CTranslate2)")
        whole = clock.seconds.pop("encoder + beam search, results")
        clock.seconds["Whisper encoder (CTranslate2)"] = encoder
        clock.seconds["beam search 5 and results"] = whole - encoder
    return Compute(clock.seconds, chunk_count, wall)


def main() -> None:
    import argparse

    import ctranslate2

    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--mixed", action="store_true", help="the mixed workload (benchmarks/mixed.py), not the dev set"
    )
    args = parser.parse_args()
    if args.mixed:
        from benchmarks.mixed import describe, mixed_workload

        files = mixed_workload()
        paths, audio_seconds, what = [f.path for f in files], sum(f.seconds for f in files), describe(files)
    else:
        refs = english_dev_set()
        paths, audio_seconds = [r.path for r in refs], sum(r.duration for r in refs)
        what = f"dev set: {len(paths)} files, {audio_seconds:.1f} s of audio"
    cores = os.cpu_count() or 1

    plain = PlainWhisperX()
    plain.transcribe(paths[0])
    plain_before = plain.run(paths, audio_seconds).wall_seconds
    compute = service_compute(paths)
    plain_after = plain.run(paths, audio_seconds).wall_seconds
    plain_wall = (plain_before + plain_after) / 2
    needed = compute.total

    version = ctranslate2.__version__
    print(f"machine: {cores} cores; {what}; {compute.chunks} chunks; CTranslate2 {version}, int8, 1 thread")
    print(f"plain WhisperX: before {plain_before:.1f} s, after {plain_after:.1f} s, mean {plain_wall:.1f} s\n")
    print(compute.table())
    print(
        f"\nceiling on {cores} cores with nothing but this compute: {needed / cores:.1f} s wall, "
        f"**{plain_wall * cores / needed:.2f}x** plain WhisperX"
    )


if __name__ == "__main__":
    main()
