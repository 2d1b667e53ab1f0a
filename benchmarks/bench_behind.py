"""Question: how long does a short request take while a 30-minute upload runs, and where does
its time go?

The service as `serve run config.yaml` runs it (cache off), through the `openai` SDK: an 11 s
request (jfk.flac) alone (median of 3); then, per repeat, a 30-minute upload (dev-set speech laid
end to end) and the same short request sent 5, 10, 15, 20 and 30 s after it started. Each short
request's `Server-Timing` header splits its time: `decode` (reading the upload), `first_chunk`
(until the VAD announced its first chunk), `chunk_decode` (the Transcriber's batches holding
its chunks), `total`; what `total` holds beyond `first_chunk` + `chunk_decode` is its chunks'
wait for a turn and the round trips. bench_service --quick runs the same probe once.

    .venv/bin/python -m benchmarks.bench_behind [--repeats 2] [--language en]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

# When the short request is sent, in seconds after the long one: early (its VAD and first
# chunks), and while its chunks fill the Transcriber's batches.
BEHIND_OFFSETS_S = (5.0, 10.0, 15.0, 20.0, 30.0)
PORT = 18201
T, U = TypeVar("T"), TypeVar("U")


def short_behind_long(send_long: Callable[[], T], send_short: Callable[[], U]) -> tuple[T, dict[float, U]]:
    """`send_long()` in a thread; `send_short()` at each of BEHIND_OFFSETS_S seconds after it
    started, while it runs. Returns the long call's result and {offset: the short call's}."""
    outcome: list[T] = []
    long_call = threading.Thread(target=lambda: outcome.append(send_long()))
    long_call.start()
    sent = time.perf_counter()
    behind: dict[float, U] = {}
    for offset in BEHIND_OFFSETS_S:
        time.sleep(max(0.0, sent + offset - time.perf_counter()))
        if long_call.is_alive():
            behind[offset] = send_short()
    long_call.join()
    return outcome[0], behind


def parse_server_timing(header: str) -> dict[str, float]:
    """`vad;dur=812.5, asr;dur=1020.0` -> {"vad": 0.8125, "asr": 1.02} (seconds)."""
    timings = {}
    for part in header.split(","):
        name, _, duration = part.strip().partition(";dur=")
        if name and duration:
            timings[name] = float(duration) / 1000
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--language", default="en", help="the short and long requests' language ('' for none)")
    args = parser.parse_args()

    import openai

    from benchmarks import launcher
    from benchmarks.bench_service import config_yaml, long_recording
    from benchmarks.common import SPEECH_DIR, english_dev_set

    short = SPEECH_DIR / "jfk.flac"
    long_path = Path(tempfile.mkdtemp()) / "long.wav"
    long_seconds = long_recording([r.path for r in english_dev_set()], 1800.0, long_path)
    service_args, deployments = config_yaml()
    service_args["cache"] = {"enabled": False}
    base = launcher.start(service_args, port=PORT, deployments=deployments, every_model=False)
    given = {"language": args.language} if args.language else {}
    try:
        launcher.wait_loaded(base)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", timeout=900, max_retries=0)

        def transcribe(path: Path) -> tuple[float, dict[str, float]]:
            start = time.perf_counter()
            with open(path, "rb") as f:
                raw = client.audio.transcriptions.with_raw_response.create(
                    model="whisper-1", file=f, response_format="verbose_json", **given
                )
            return time.perf_counter() - start, parse_server_timing(raw.headers.get("server-timing", ""))

        transcribe(short)  # warm-up
        alone_runs = [transcribe(short) for _ in range(3)]
        alone = statistics.median(s for s, _ in alone_runs)
        rows = []
        for repeat in range(args.repeats):
            long_s, behind = short_behind_long(lambda: transcribe(long_path)[0], lambda: transcribe(short))
            rows += [(repeat, offset, seconds, timing) for offset, (seconds, timing) in behind.items()]
            print(f"repeat {repeat + 1}: the {long_seconds / 60:.0f}-minute upload took {long_s:.1f} s")
    finally:
        launcher.stop()
        long_path.unlink(missing_ok=True)

    print(f"\n{short.name} alone: {alone:.2f} s (median of 3); {[round(s, 2) for s, _ in alone_runs]}")
    print(f"stages alone (last): {alone_runs[-1][1]}\n")
    print("| repeat | sent at s | took s | x alone | first chunk s | chunk decode s | waits + trips s |")
    print("|---|---|---|---|---|---|---|")
    for repeat, offset, seconds, timing in rows:
        first, decode = timing.get("first_chunk", 0.0), timing.get("chunk_decode", 0.0)
        rest = timing.get("total", seconds) - first - decode
        print(
            f"| {repeat + 1} | {offset:.0f} | {seconds:.2f} | {seconds / alone:.2f}x | {first:.2f} | "
            f"{decode:.2f} | {rest:.2f} |"
        )
    ratios = [seconds / alone for _, _, seconds, _ in rows]
    if ratios:
        print(f"\nmedian {statistics.median(ratios):.2f}x, worst {max(ratios):.2f}x alone")


if __name__ == "__main__":
    main()
