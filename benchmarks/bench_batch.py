"""Question: how fast is a Ray Data batch job vs plain WhisperX over the same files?

Plain WhisperX runs the 40 English dev files one after another (models resident). The job
then runs over a folder holding the same files (1x), and over a folder holding them three
times (3x) and ten times (10x, a small backlog), on a local Ray cluster started beforehand (as `ray job submit`
finds one). Job times include starting the stage actors and loading their models.

    .venv/bin/python -m benchmarks.bench_batch
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from benchmarks.common import PlainWhisperX, english_dev_set


def main() -> None:
    import ray

    from cluster.batch import RunOptions, run_batch
    from pipeline.config import PipelineConfig
    from pipeline.plan import Request

    refs = english_dev_set()
    audio_seconds = sum(r.duration for r in refs)
    baseline = PlainWhisperX()
    baseline.transcribe(refs[0].path)
    plain = baseline.run([r.path for r in refs], audio_seconds)
    del baseline

    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", _node_ip_address="127.0.0.1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for copies in (1, 3, 10):
            folder = Path(tmp) / f"in{copies}"
            for c in range(copies):
                (folder / f"copy{c}").mkdir(parents=True)
                for r in refs:
                    shutil.copy(r.path, folder / f"copy{c}" / r.path.name)
            summary = run_batch(
                str(folder), str(Path(tmp) / f"out{copies}"), PipelineConfig(), Request(), RunOptions(progress=False)
            )
            assert summary.failures == 0 and summary.files_done == len(refs) * copies
            rows.append((copies, summary))
    ray.shutdown()

    print(f"machine: {os.cpu_count()} cores; dev set: {len(refs)} files, {audio_seconds:.1f} s\n")
    print("| run | files | audio s | wall s | x real time | vs plain WhisperX |")
    print("|---|---|---|---|---|---|")
    print(
        f"| plain WhisperX, sequential | {len(refs)} | {audio_seconds:.1f} | {plain.wall_seconds:.1f} | "
        f"{plain.speed:.1f} | 1.00x |"
    )
    for copies, s in rows:
        print(
            f"| batch job, dev set x{copies} | {s.files_done} | {s.audio_seconds:.1f} | {s.wall_seconds:.1f} | "
            f"{s.throughput:.1f} | {s.throughput / plain.speed:.2f}x |"
        )


if __name__ == "__main__":
    main()
