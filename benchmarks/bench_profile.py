"""Question: where does the service's time go under the quick throughput workload?

The service runs as `serve run config.yaml` does (cache off); the dev set is sent by 8 clients
through the `openai` SDK as `verbose_json`, as in `bench_service --quick`. Meanwhile:
- every Serve replica's CPU seconds are read from /proc (user + system, all its threads);
- py-spy samples each replica's Python threads (active samples only, 50 Hz), and each sample
  is put in the stage its stack passes through (first match, outermost frame first).
CPU that no Python thread accounts for ran in native pools (CTranslate2's workers in the
Transcriber, torch's intra-op threads elsewhere): it is listed as such. Idle is the rest of
wall x cores.

    .venv/bin/python -m benchmarks.bench_profile [--clients 8] [--mixed]

`--mixed`: benchmarks/mixed.py's workload (54 files, 2 s to 5 min) instead of the dev set, with
`language=en` as bench_mixed sends it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.bench_growth import replica_pids
from benchmarks.bench_service import config_yaml, cpu_seconds
from benchmarks.common import english_dev_set

PORT = 18203
RATE_HZ = 50
# (stage, substrings of a frame): the first stage whose substring a stack's frames contain,
# outermost frame first, is where that sample's time went.
STAGES = (
    ("VAD", ("pipeline/vad.py", "silero", "pyannote")),
    ("audio decode", ("pipeline/audio.py", "soundfile", "/av/", "ffmpeg")),
    ("ASR (features, prompt, results)", ("pipeline/asr.py", "faster_whisper")),
    ("word timing", ("pipeline/align.py", "pipeline/word_times.py")),
    ("diarization", ("pipeline/diarize",)),
    ("result cache", ("cache_client.py", "cache_store.py", "cache_entries.py", "cache_keys.py")),
    ("formats and serialisation", ("pipeline/formats.py", "json/", "msgpack", "pickle")),
    ("HTTP parsing and the plan", ("serve/http.py", "serve/ingress.py", "pipeline/plan.py", "multipart")),
    ("Ray Serve and Ray core", ("ray/", "grpc", "starlette", "uvicorn", "asyncio/")),
)


def stage_of(stack: str) -> str:
    frames = stack.split(";")
    for name, needles in STAGES:
        if any(needle in frame for frame in frames for needle in needles):
            return name
    return "other Python"


def read_samples(path: Path) -> dict[str, int]:
    """py-spy's raw (collapsed) output: 'frame;frame;... count' per line -> samples per stage."""
    out: dict[str, int] = defaultdict(int)
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            out[stage_of(stack)] += int(count)
    return out


def main() -> None:
    import openai

    from benchmarks import launcher

    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--mixed", action="store_true", help="benchmarks/mixed.py's workload, language=en")
    options = parser.parse_args()
    if options.mixed:
        import random

        from benchmarks.mixed import mixed_workload

        files = mixed_workload()
        paths, audio_s = [f.path for f in files], sum(f.seconds for f in files)
        random.Random(44).shuffle(paths)  # as bench_mixed sends them
    else:
        paths = [r.path for r in english_dev_set()]
        audio_s = sum(r.duration for r in english_dev_set())
    given = {"language": "en"} if options.mixed else {}
    args, deployments = config_yaml()
    args["cache"] = {"enabled": False}
    base = launcher.start(args, port=PORT, deployments=deployments)
    spy = Path(sys.executable).with_name("py-spy")
    out_dir = Path(tempfile.mkdtemp())
    try:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", timeout=900, max_retries=0)

        def transcribe(path: Path) -> None:
            with open(path, "rb") as f:
                client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json", **given)

        transcribe(paths[0])  # warm-up
        pids = {name: found[0] for name, found in replica_pids().items()}  # one replica each here
        before = cpu_seconds()
        spies = {
            name: subprocess.Popen(
                [
                    str(spy),
                    "record",
                    "-p",
                    str(pid),
                    "-r",
                    str(RATE_HZ),
                    "-f",
                    "raw",
                    "--nonblocking",
                    "-o",
                    str(out_dir / f"{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, pid in pids.items()
        }
        time.sleep(1.0)  # py-spy attached
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=options.clients) as pool:
            list(pool.map(transcribe, paths))
        wall = time.perf_counter() - start
        after = cpu_seconds()
        for process in spies.values():
            process.send_signal(signal.SIGINT)
        for process in spies.values():
            process.wait(timeout=60)
    finally:
        launcher.stop()

    machine = wall * os.cpu_count()
    print(f"machine: {os.cpu_count()} cores; {len(paths)} files, {audio_s:.0f} s of audio, {options.clients} clients,")
    print(
        f"verbose_json; wall {wall:.1f} s x {os.cpu_count()} cores = {machine:.0f} CPU s "
        f"(py-spy attached, {RATE_HZ} Hz)\n"
    )
    print("| replica | stage | CPU s | share of the machine |\n|---|---|---|---|")
    accounted = 0.0
    for name in sorted(pids, key=lambda n: -(after[n] - before[n])):
        cpu = after[name] - before[name]
        accounted += cpu
        samples = read_samples(out_dir / f"{name}.txt")
        python_s = {stage: count / RATE_HZ for stage, count in samples.items()}
        # Sampled seconds are an estimate of the Python threads' CPU: scale them to the
        # measured total when they exceed it (a thread sampled active while it waited).
        scale = min(1.0, cpu / sum(python_s.values())) if python_s else 1.0
        for stage, seconds in sorted(python_s.items(), key=lambda kv: -kv[1]):
            print(f"| {name} | {stage} | {seconds * scale:.1f} | {seconds * scale / machine:.0%} |")
        native = cpu - sum(python_s.values()) * scale
        if native > 0.05:
            print(f"| {name} | native pools (no Python frame) | {native:.1f} | {native / machine:.0%} |")
        print(f"| **{name}** | all | **{cpu:.1f}** | **{cpu / machine:.0%}** |")
    others = {name: after[name] - before.get(name, 0.0) for name in after if name not in pids}
    for name, cpu in sorted(others.items(), key=lambda kv: -kv[1]):
        accounted += cpu
        print(f"| {name} | all | {cpu:.1f} | {cpu / machine:.0%} |")
    rest = machine - accounted
    print(f"| idle and unlabelled processes | | {rest:.1f} | {rest / machine:.0%} |")


if __name__ == "__main__":
    main()
