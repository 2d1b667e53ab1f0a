"""Question: what does a decompression bomb cost? A FLAC of 4 h 10 min of silence (a few MB,
over the 4 h default limit):
1. decoded by plain WhisperX (`whisperx.load_audio`: ffmpeg to a pipe, all of it), and by this
   project's decoder (`pipeline.audio.load_audio`: the header first), each in a fresh process:
   seconds and peak RSS;
2. four of them at once at the service (CPU default, 127.0.0.1): seconds until the 413s, the
   ingress replica's RSS after.

    .venv/bin/python -m benchmarks.bench_bomb
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PORT = 18220
SECONDS = 4 * 3600 + 600

# ru_maxrss of children is the peak over all of them so far: the small one runs first.
DECODE = {
    "whisperx-serve (pipeline.audio.load_audio)": (
        "import sys\nfrom pipeline.audio import load_audio\ntry:\n    load_audio(sys.argv[1])\n"
        "except Exception as e:\n    print(type(e).__name__, e)"
    ),
    "plain WhisperX (whisperx.load_audio)": "import whisperx, sys; whisperx.load_audio(sys.argv[1])",
}


def decode_in_child(code: str, path: Path) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    elapsed = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before) / 1024, (proc.stdout + proc.stderr).strip().splitlines()[-1:]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    import httpx

    from benchmarks import launcher

    path = Path(tempfile.mkdtemp()) / "bomb.flac"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono"]
        + ["-t", str(SECONDS), str(path)],
        check=True,
    )
    print(f"bomb: {path.stat().st_size / 1e6:.1f} MB, {SECONDS / 3600:.2f} h of silence\n")
    print("| decoder (fresh process) | seconds | peak RSS (MiB) | outcome |")
    print("|---|---|---|---|")
    for name, code in DECODE.items():
        elapsed, peak, last = decode_in_child(code, path)
        print(f"| {name} | {elapsed:.2f} | {peak:.0f} | {' '.join(last)[:80] or 'decoded'} |", flush=True)
    base = launcher.start({}, port=PORT)
    with httpx.Client(base_url=base, timeout=600) as client:
        ingress = client.get("/healthz").json()["ingress_pid"]
        before = rss_mib(ingress)
        body = path.read_bytes()
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda _: client.post("/v1/transcribe", content=body).status_code, range(4)))
        elapsed = time.monotonic() - started
        after = rss_mib(ingress)
    launcher.stop()
    print(f"\nservice, 4 bombs at once: statuses {codes}, {elapsed:.2f} s, ingress RSS {before:.0f} -> {after:.0f} MiB")


if __name__ == "__main__":
    main()
