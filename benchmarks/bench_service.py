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

`--quick` (a few minutes; the regression check after any change to the serving path) runs what
a client of `serve run config.yaml` sees, through the official `openai` SDK:
1. plain WhisperX over the dev set, then the service with 8 concurrent clients asking for
   `verbose_json` (OpenAI's default granularity: segments), as throughput vs plain WhisperX;
2. a 30-minute upload (dev-set files laid end to end) sent 1 s after a 106 s request: admitted
   or refused; then an 11 s request (jfk.flac) sent 5, 10, 15, 20 and 30 s after the long one
   started (while it runs): its time behind the long one vs alone (median of 3), and the long
   one's own time;
3. the mixed workload (benchmarks/mixed.py: 54 files, 2 s to 5 min, wav/flac/mp3), 8 clients,
   `language=en`, once: against plain WhisperX (before and after, as in 1.) and against the
   service's own compute ceiling (`bench_ceiling.service_compute` on one thread, over the cores);
   bench_mixed runs it three times.

    .venv/bin/python -m benchmarks.bench_service --quick
"""

from __future__ import annotations

import argparse
import os
import random
import re
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
    parser.add_argument("--quick", action="store_true", help="the regression check: see the module's doc")
    parser.add_argument(
        "--language",
        default=None,
        help="--quick: the language every request gives (default: none, so the service identifies it)",
    )
    args = parser.parse_args()
    if args.quick:
        return quick(language=args.language)

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


def config_yaml() -> tuple[dict, dict[str, dict]]:
    """config.yaml's application args and deployments, as `serve run config.yaml` serves them."""
    import yaml

    from benchmarks.common import REPO

    app = yaml.safe_load((REPO / "config.yaml").read_text())["applications"][0]
    deployments = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app.get("deployments", [])}
    return dict(app["args"]), deployments


def long_recording(paths, seconds: float, out) -> float:
    """`seconds` of dev-set speech laid end to end (0.5 s apart) as one 16 kHz WAV at `out`."""
    import numpy as np
    import soundfile

    from pipeline.audio import load_audio
    from pipeline.schema import SAMPLE_RATE

    clips = [load_audio(p).samples for p in paths]
    gap = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    pieces, total, i = [], 0, 0
    while total < seconds * SAMPLE_RATE:
        pieces += [clips[i % len(clips)], gap]
        total += len(clips[i % len(clips)]) + len(gap)
        i += 1
    samples = np.concatenate(pieces)[: int(seconds * SAMPLE_RATE)]
    soundfile.write(out, samples, SAMPLE_RATE, subtype="PCM_16")
    return len(samples) / SAMPLE_RATE


_LABELS = (
    (re.compile(rb"ServeReplica:[^:]+:(\w+)"), None),
    (re.compile(rb"ProxyActor"), "Serve proxy"),
    (re.compile(rb"ServeController"), "Serve controller"),
    (re.compile(rb"raylet"), "raylet"),
    (re.compile(rb"gcs_server"), "gcs"),
    (re.compile(rb"agent"), "Ray agents"),
    (re.compile(rb"dashboard"), "Ray dashboard"),
    (re.compile(rb"log_monitor|monitor\.py"), "Ray monitors"),
    (re.compile(rb"ray::|default_worker"), "other Ray workers"),
)


def steal_seconds() -> float:
    """CPU seconds the hypervisor gave to others while this VM wanted them (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def idle_seconds() -> float:
    """CPU seconds every core of this machine has been idle (/proc/stat: idle + iowait)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) each Ray process on this machine has used, by role, with its
    finished children's (the ingress's ffmpeg decodes)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        label = "this process (clients)" if int(pid) == os.getpid() else None
        for pattern, name in _LABELS:
            match = pattern.search(cmdline)
            if label is None and match:
                label = name or match.group(1).decode()
        if label is not None:
            out[label] = out.get(label, 0.0) + sum(int(x) for x in fields[11:15]) / tick
    return out


def quick(clients: int = 8, language: str | None = None) -> None:
    import tempfile
    import threading
    from pathlib import Path

    import openai

    from benchmarks import launcher
    from benchmarks.bench_behind import short_behind_long
    from benchmarks.bench_ceiling import service_compute
    from benchmarks.bench_mixed import one_run
    from benchmarks.common import SPEECH_DIR
    from benchmarks.mixed import describe, mixed_workload

    mixed = mixed_workload()
    mixed_paths, mixed_seconds = [f.path for f in mixed], sum(f.seconds for f in mixed)
    mixed_order = list(range(len(mixed)))
    random.Random(44).shuffle(mixed_order)  # as bench_mixed sends them
    refs = english_dev_set()
    paths = [r.path for r in refs]
    audio_seconds = sum(r.duration for r in refs)
    short, medium = SPEECH_DIR / "jfk.flac", SPEECH_DIR / "diarization" / "librispeech_3spk_turns.flac"
    long_path = Path(tempfile.mkdtemp()) / "long.wav"
    long_seconds = long_recording(paths, 1800.0, long_path)

    # Plain WhisperX runs before and after the service's throughput run, in the same process
    # with its models resident: this VM's speed drifts by tens of percent over minutes (host
    # contention; /proc/stat's steal counts some of it), so the ratio is against their mean.
    baseline = PlainWhisperX()
    baseline.transcribe(paths[0])
    stolen = steal_seconds()
    plain_before = baseline.run(paths, audio_seconds)
    plain_stolen = steal_seconds() - stolen
    mixed_plain = [baseline.run(mixed_paths, mixed_seconds).wall_seconds]
    ceiling = service_compute(mixed_paths, split_encoder=False)

    service_args, deployments = config_yaml()
    service_args["cache"] = {"enabled": False}  # models, not the cache
    started = time.perf_counter()
    base = launcher.start(service_args, port=PORT, deployments=deployments, every_model=False)
    ready_s = time.perf_counter() - started
    try:
        launcher.wait_loaded(base)  # the throughput run starts with every model loaded
        loaded_s = time.perf_counter() - started
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", timeout=900, max_retries=0)

        def transcribe(path: Path) -> float:
            start = time.perf_counter()
            with open(path, "rb") as f:
                given = {"language": language} if language else {}
                client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json", **given)
            return time.perf_counter() - start

        transcribe(paths[0])  # warm-up
        cpu_before, stolen = cpu_seconds(), steal_seconds()
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            list(pool.map(transcribe, paths))
        wall = time.perf_counter() - start
        cpu_after, service_stolen = cpu_seconds(), steal_seconds() - stolen
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_after.items()}
        stolen = steal_seconds()
        plain_after = baseline.run(paths, audio_seconds)  # the service idles meanwhile
        plain_stolen += steal_seconds() - stolen
        mixed_run = one_run(mixed, mixed_order, "en", client)
        mixed_plain.append(baseline.run(mixed_paths, mixed_seconds).wall_seconds)
        del baseline
        alone = statistics.median(transcribe(short) for _ in range(3))

        def send_long() -> float | str:
            try:
                return transcribe(long_path)
            except openai.APIStatusError as exc:
                return f"HTTP {exc.status_code} (Retry-After {exc.response.headers.get('retry-after')})"

        medium_call = threading.Thread(target=lambda: transcribe(medium))
        medium_call.start()
        time.sleep(1.0)
        # seconds into the long one -> the short request's time
        long_s, behind = short_behind_long(send_long, lambda: transcribe(short))
        medium_call.join()
    finally:
        launcher.stop()
        long_path.unlink(missing_ok=True)

    speed = audio_seconds / wall
    asked = f"language={language} given" if language else "no language given (the service identifies it)"
    print(f"machine: {os.cpu_count()} cores; {len(paths)} files, {audio_seconds:.1f} s of audio; config.yaml; {asked}")
    print(
        f"service healthy {ready_s:.1f} s after the deploy began (Ray started before); "
        f"every model loaded at {loaded_s:.1f} s\n"
    )
    plain_wall = (plain_before.wall_seconds + plain_after.wall_seconds) / 2
    plain_speed = audio_seconds / plain_wall
    print("| run | wall s | x real time | vs plain WhisperX |")
    print("|---|---|---|---|")
    print(
        f"| plain WhisperX, sequential (before {plain_before.wall_seconds:.1f} s, after "
        f"{plain_after.wall_seconds:.1f} s: mean) | {plain_wall:.1f} | {plain_speed:.1f} | 1.00x |"
    )
    print(
        f"| service, {clients} clients, openai SDK, verbose_json | {wall:.1f} | {speed:.1f} | "
        f"{speed / plain_speed:.2f}x |"
    )
    print(f"\nCPU time the host took (steal): plain runs {plain_stolen:.1f} s, service run {service_stolen:.1f} s")
    print(
        f"\nCPU seconds during the throughput run ({wall:.1f} s wall x {os.cpu_count()} cores = "
        f"{wall * os.cpu_count():.0f}):"
    )
    print("| process | CPU s | share of the machine |\n|---|---|---|")
    for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {seconds:.1f} | {seconds / (wall * os.cpu_count()):.0%} |")
    idle = wall * os.cpu_count() - sum(cpu.values())
    print(f"| idle (not any of these) | {idle:.1f} | {idle / (wall * os.cpu_count()):.0%} |")
    long_text = f"{long_s:.1f} s" if isinstance(long_s, float) else str(long_s)
    behind_text = ", ".join(f"at {at:.0f} s {s:.2f} s ({s / alone:.2f}x)" for at, s in behind.items()) or "not sent"
    worst = (
        f"; median {statistics.median(behind.values()) / alone:.2f}x, worst {max(behind.values()) / alone:.2f}x alone"
        if behind
        else ""
    )
    print(
        f"\n{long_seconds / 60:.0f}-minute upload sent 1 s after a {medium.name} request: {long_text}; "
        f"11 s request ({short.name}) alone {alone:.2f} s (median of 3), sent into the long one: {behind_text}{worst}"
    )
    cores = os.cpu_count() or 1
    mixed_plain_wall, ceiling_wall = statistics.mean(mixed_plain), ceiling.ceiling_wall(cores)
    print(f"\n{describe(mixed)}; {clients} clients, language=en\n")
    print("| run | wall s | vs plain WhisperX | of the ceiling |\n|---|---|---|---|")
    print(
        f"| plain WhisperX (before {mixed_plain[0]:.1f} s, after {mixed_plain[1]:.1f} s: mean) | "
        f"{mixed_plain_wall:.1f} | 1.00x | |"
    )
    print(
        f"| ceiling: the service's compute, {ceiling.total:.1f} CPU s on one thread / {cores} cores | "
        f"{ceiling_wall:.1f} | {mixed_plain_wall / ceiling_wall:.2f}x | 100 % |"
    )
    print(
        f"| service | {mixed_run.wall:.1f} | {mixed_plain_wall / mixed_run.wall:.2f}x | "
        f"**{ceiling_wall / mixed_run.wall:.0%}** |"
    )
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in sorted(mixed_run.cpu.items(), key=lambda kv: -kv[1]) if v >= 0.3)
    print(
        f"\nmixed run: idle {mixed_run.idle / (mixed_run.wall * cores):.0%} of the machine; {mixed_run.tail()}; "
        f"CPU s: {cpu} (one run: this VM's speed drifts, bench_mixed gives the median of three)"
    )


if __name__ == "__main__":
    main()
