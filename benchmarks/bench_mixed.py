"""Question: on traffic shaped like real uploads (benchmarks/mixed.py: 54 files, 2 s to 5 min,
most under 10 s, wav/flac/mp3), how close does the service come to its own compute ceiling, and
how far ahead of plain WhisperX is it?

In one process, on this machine:
1. plain WhisperX (bundled tiny.en, its README's calls) over the files, before and after;
2. the ceiling: the service's own compute over the same files on one thread each
   (`bench_ceiling.service_compute`), divided by the cores, before and after the service;
3. the service as `serve run config.yaml` runs it (cache off), 8 concurrent `openai` SDK clients
   asking `verbose_json` with `language=en`, the files in a fixed shuffled order, `--runs` times:
   each run's wall, CPU seconds per process, idle, and when the short files were done against
   the long ones;
4. with `--no-language`: the same runs without a language (the service identifies it), against
   plain WhisperX on the multilingual base model with its own detection.

Every report reads "service seconds against ceiling seconds": the median run and the spread.

    .venv/bin/python -m benchmarks.bench_mixed [--runs 3] [--no-language]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import PlainWhisperX

PORT = 18210
CLIENTS = 8


@dataclass
class ServiceRun:
    wall: float
    cpu: dict[str, float]  # by process (with its finished children)
    stolen: float
    idle: float  # CPU seconds no process used (/proc/stat)
    finished: list[tuple[float, float, float]] = field(default_factory=list)  # (audio s, start, end)
    idle_by_second: list[float] = field(default_factory=list)  # share of the cores idle, each second

    def tail(self, long_s: float = 30.0) -> str:
        """When the short files were all answered, against the last answer."""
        short_done = max((end for seconds, _, end in self.finished if seconds <= long_s), default=0.0)
        return f"short files done at {short_done:.1f} s, last answer at {self.wall:.1f} s"


def plain_multilingual():
    from benchmarks.bench_languages import PlainWhisperXMultilingual
    from pipeline.bundled import assembled_model_dir

    return PlainWhisperXMultilingual(assembled_model_dir("base"))


class IdleSampler:
    """The machine's idle share, second by second, while a run goes (a thread reading /proc/stat)."""

    def __init__(self, cores: int):
        import threading

        self.cores, self.shares = cores, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        from benchmarks.bench_service import idle_seconds

        last = idle_seconds()
        while not self._stop.wait(1.0):
            now = idle_seconds()
            self.shares.append((now - last) / self.cores)
            last = now

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return self.shares


def service_runs(files, order: list[int], runs: int, language: str | None, client) -> list[ServiceRun]:
    return [one_run(files, order, language, client) for _ in range(runs)]


def one_run(files, order: list[int], language: str | None, client) -> ServiceRun:
    """Every file once, CLIENTS at a time, in `order`."""
    from benchmarks.bench_service import cpu_seconds, idle_seconds, steal_seconds

    finished: list[tuple[float, float, float]] = []
    given = {"language": language} if language else {}

    def transcribe(i: int) -> None:
        sent = time.perf_counter() - start
        with open(files[i].path, "rb") as f:
            client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json", **given)
        finished.append((files[i].seconds, sent, time.perf_counter() - start))

    cpu_before, stolen, idle = cpu_seconds(), steal_seconds(), idle_seconds()
    sampler = IdleSampler(os.cpu_count() or 1)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        list(pool.map(transcribe, order))
    wall = time.perf_counter() - start
    idle = idle_seconds() - idle
    cpu = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_seconds().items()}
    return ServiceRun(wall, cpu, steal_seconds() - stolen, idle, finished, sampler.stop())


def spread(walls: list[float]) -> str:
    return f"median {statistics.median(walls):.1f} s (runs {', '.join(f'{w:.1f}' for w in walls)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-language", action="store_true", help="also without a language: see the module's doc")
    parser.add_argument("--service-only", action="store_true", help="diagnosis: no plain WhisperX, no ceiling")
    parser.add_argument("--long-files", action="store_true", help="when each file over 30 s was sent and answered")
    args = parser.parse_args()

    import openai

    from benchmarks import launcher
    from benchmarks.bench_ceiling import service_compute
    from benchmarks.bench_service import config_yaml
    from benchmarks.mixed import describe, mixed_workload

    files = mixed_workload()
    paths: list[Path] = [f.path for f in files]
    audio_seconds = sum(f.seconds for f in files)
    cores = os.cpu_count() or 1
    order = list(range(len(files)))
    random.Random(44).shuffle(order)  # arrivals mixed, the same every run

    if not args.service_only:
        plain = PlainWhisperX()
        plain.transcribe(paths[0])
        plain_before = plain.run(paths, audio_seconds).wall_seconds
        compute = service_compute(paths)

    service_args, deployments = config_yaml()
    service_args["cache"] = {"enabled": False}  # models, not the cache
    base = launcher.start(service_args, port=PORT, deployments=deployments, every_model=False)
    try:
        launcher.wait_loaded(base)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", timeout=900, max_retries=0)
        for path in paths[:2]:  # warm-up, both paths (with and without a language)
            with open(path, "rb") as f:
                client.audio.transcriptions.create(model="whisper-1", file=f, language="en")
            with open(path, "rb") as f:
                client.audio.transcriptions.create(model="whisper-1", file=f)
        english = service_runs(files, order, args.runs, "en", client)
        unknown = service_runs(files, order, args.runs, None, client) if args.no_language else []
    finally:
        launcher.stop()
    print(f"machine: {cores} cores; {describe(files)}; {CLIENTS} clients, openai SDK, verbose_json, config.yaml\n")
    if args.service_only:
        return print_runs(english, cores, args.long_files)
    plain_after = plain.run(paths, audio_seconds).wall_seconds
    plain_wall = (plain_before + plain_after) / 2
    # This VM's speed drifts by several percent over minutes: the ceiling too is measured before
    # and after the service's runs, and their mean is the one they are compared with.
    compute_after = service_compute(paths, split_encoder=False).total
    ceiling = (compute.total + compute_after) / 2 / cores
    del plain
    multilingual_wall = None
    if args.no_language:
        multi = plain_multilingual()
        multi.transcribe(paths[0])
        start = time.perf_counter()
        for path in paths:
            multi.transcribe(path)
        multilingual_wall = time.perf_counter() - start

    print(f"plain WhisperX (tiny.en): before {plain_before:.1f} s, after {plain_after:.1f} s, mean {plain_wall:.1f} s")
    print(f"\nthe service's own compute, one thread ({compute.chunks} chunks):\n")
    print(compute.table())
    walls = [r.wall for r in english]
    median = statistics.median(walls)
    print(
        f"\n| language=en | wall s | vs plain WhisperX | of the ceiling ({ceiling:.1f} s = CPU s before "
        f"{compute.total:.1f}, after {compute_after:.1f}: mean / {cores} cores) |\n|---|---|---|---|"
    )
    print(f"| plain WhisperX | {plain_wall:.1f} | 1.00x | |")
    print(f"| ceiling | {ceiling:.1f} | {plain_wall / ceiling:.2f}x | 100 % |")
    print(f"| service, {spread(walls)} | {median:.1f} | {plain_wall / median:.2f}x | **{ceiling / median:.0%}** |")
    print_runs(english, cores, args.long_files)
    if unknown:
        walls = [r.wall for r in unknown]
        median = statistics.median(walls)
        print(
            f"\nno language: service {spread(walls)}; plain WhisperX on multilingual base with its detection "
            f"{multilingual_wall:.1f} s: **{multilingual_wall / median:.2f}x**"
        )
        for n, run in enumerate(unknown, 1):
            print(f"  run {n}: idle {run.idle / (run.wall * cores):.0%}; {run.tail()}")


def print_runs(runs: list[ServiceRun], cores: int, long_files: bool) -> None:
    if len(runs) > 1 or long_files:
        print(f"service: {spread([r.wall for r in runs])}")
    for n, run in enumerate(runs, 1):
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in sorted(run.cpu.items(), key=lambda kv: -kv[1]) if v >= 0.1)
        cpu += f", the rest (other processes) {run.wall * cores - run.idle - sum(run.cpu.values()):.1f}"
        print(
            f"\nrun {n}: {run.wall:.1f} s; idle {run.idle:.1f} CPU s of {run.wall * cores:.0f} "
            f"({run.idle / (run.wall * cores):.0%}); steal {run.stolen:.1f} s; {run.tail()}\n  CPU s: {cpu}"
            f"\n  idle share each second: {' '.join(f'{share:.0%}' for share in run.idle_by_second)}"
        )
        if long_files:
            for seconds, sent, end in sorted(run.finished, key=lambda f: f[1]):
                if seconds > 30:
                    print(f"  {seconds:.0f} s file: sent at {sent:.1f} s, answered at {end:.1f} s")


if __name__ == "__main__":
    main()
