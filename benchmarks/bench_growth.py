"""Question: how do time and memory grow with one recording's length, diarized, through the
service (and, with --batch, the Ray Data batch job)?

One recording of each length (dev-set speech laid end to end, four LibriSpeech speakers; see
bench_service.long_recording) is sent to the native endpoint with `diarize=true`, one at a
time, on config.yaml's service (cache off). While each runs, every Serve replica's resident
memory is sampled from /proc every 0.25 s: the table gives each one's peak during that request.
Time should grow linearly (the 90-minute file <= 9.5x the 10-minute one) and memory stay bounded.

    .venv/bin/python -m benchmarks.bench_growth [--minutes 10 30 90] [--batch]

`--minutes 180 --batch` is the 3-hour case (config.yaml's max_audio_seconds): through the
service, then as a batch job over a folder holding the file.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.bench_service import config_yaml, long_recording
from benchmarks.common import english_dev_set

PORT = 18202
_REPLICA = re.compile(rb"ServeReplica:[^:]+:(\w+)")
# The batch job's workers: Ray names a process after what it runs (ray::MapWorker(MapBatches(
# Transcribe)), ray::ReadBinary->Map(...)); idle pool workers are ray::IDLE.
_BATCH_ACTOR = re.compile(rb"^ray::(?:MapWorker\()?(?:MapBatches\()?(?!IDLE)(\w+)")


def replica_pids(pattern: re.Pattern = _REPLICA) -> dict[str, list[int]]:
    """pids of each Serve replica process on this machine, by deployment name (or of the
    processes whose command line `pattern` names, by that name)."""
    out: dict[str, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                match = pattern.search(f.read())
        except OSError:
            continue
        if match is not None:
            out.setdefault(match.group(1).decode(), []).append(int(pid))
    return out


def replica_rss(pattern: re.Pattern = _REPLICA) -> dict[str, int]:
    """Resident bytes of the processes `replica_pids` finds, summed by name."""
    out: dict[str, int] = {}
    for name, pids in replica_pids(pattern).items():
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status") as f:
                    rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
            except (OSError, StopIteration):
                continue
            out[name] = out.get(name, 0) + rss
    return out


class PeakMemory:
    """Samples replica_rss() in a thread; `peaks` is each replica's highest sample."""

    def __init__(self, pattern: re.Pattern = _REPLICA, interval_s: float = 0.25):
        self.pattern, self.interval_s, self.peaks = pattern, interval_s, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for name, rss in replica_rss(self.pattern).items():
                self.peaks[name] = max(self.peaks.get(name, 0), rss)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 30, 90])
    parser.add_argument("--batch", action="store_true", help="also run the longest file as a Ray Data batch job")
    args = parser.parse_args()

    import httpx

    from benchmarks import launcher

    paths = [r.path for r in english_dev_set()]
    folder = Path(tempfile.mkdtemp())
    files = {m: folder / f"in{m:g}" / f"recording_{m:g}min.wav" for m in args.minutes}
    for minutes, path in files.items():
        path.parent.mkdir()
        long_recording(paths, minutes * 60, path)

    service_args, deployments = config_yaml()
    service_args["cache"] = {"enabled": False}
    # The files are WAV (90 min: 173 MB): the upload limit is raised to fit them; the audio
    # limit (max_audio_seconds, 3 h) is config.yaml's.
    largest = max(path.stat().st_size for path in files.values())
    service_args["max_upload_bytes"] = max(int(service_args.get("max_upload_bytes", 0)), largest + 2**20)
    rows = []
    base = launcher.start(service_args, port=PORT, deployments=deployments)
    try:
        with httpx.Client(base_url=base, timeout=None) as client:
            idle = replica_rss()
            for minutes, path in files.items():
                with PeakMemory() as memory, open(path, "rb") as f:
                    start = time.perf_counter()
                    response = client.post("/v1/transcribe", files={"file": (path.name, f)}, data={"diarize": "true"})
                    wall = time.perf_counter() - start
                response.raise_for_status()
                body = response.json()
                speakers = len({t["speaker"] for t in body.get("speaker_turns", [])})
                rows.append((minutes, wall, len(body["segments"]), speakers, dict(memory.peaks)))
                print(f"{minutes:g} min: {wall:.1f} s, peaks {memory.peaks}", flush=True)
    finally:
        launcher.stop()

    batch_rows = []
    if args.batch:
        import ray

        from cluster.batch import RunOptions, run_batch
        from pipeline.audio import AudioLimits
        from pipeline.config import PipelineConfig
        from pipeline.plan import Request

        minutes = max(files)
        path = files[minutes]
        # The job's file-size limit (200 MiB) is raised to fit the WAV (3 h: 346 MB; as mp3 it
        # would be ~170 MB); the audio limit stays the default.
        config = PipelineConfig(limits=AudioLimits(max_bytes=max(AudioLimits().max_bytes, largest + 2**20)))
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", _node_ip_address="127.0.0.1")
        try:
            with PeakMemory(_BATCH_ACTOR) as memory:
                summary = run_batch(
                    str(path.parent),
                    str(folder / f"out{minutes:g}"),
                    config,
                    Request(diarize=True),
                    RunOptions(progress=False),
                )
            batch_rows.append((minutes, summary, dict(memory.peaks)))
        finally:
            ray.shutdown()
    for path in files.values():
        path.unlink()

    names = sorted({n for *_, peaks in rows for n in peaks} | set(idle))
    print(f"machine: {os.cpu_count()} cores; one recording per length, diarized, native endpoint, config.yaml\n")
    print(
        "| minutes | wall s | x real time | time vs the shortest | segments | speakers | "
        + " | ".join(f"{n} peak MiB" for n in names)
        + " |"
    )
    print("|---|---|---|---|---|---|" + "---|" * len(names))
    for minutes, wall, segments, speakers, peaks in rows:
        mib = " | ".join(f"{peaks.get(n, 0) / 2**20:.0f}" for n in names)
        print(
            f"| {minutes:g} | {wall:.1f} | {minutes * 60 / wall:.1f} | {wall / rows[0][1]:.2f}x "
            f"| {segments} | {speakers} | {mib} |"
        )
    print("| idle, before | | | | | | " + " | ".join(f"{idle.get(n, 0) / 2**20:.0f}" for n in names) + " |")
    for minutes, s, peaks in batch_rows:
        print(
            f"\nbatch job, {minutes:g} min: {s.wall_seconds:.1f} s wall ({s.audio_seconds / s.wall_seconds:.1f}x real "
            f"time), {s.files_done} done, {s.failures} failed (includes starting the stage actors); peak MiB: "
            + ", ".join(f"{name} {rss / 2**20:.0f}" for name, rss in sorted(peaks.items()))
        )


if __name__ == "__main__":
    main()
