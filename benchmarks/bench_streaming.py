"""Question: how soon does a streamed transcription of a long recording show its first words,
and what does streaming cost in total?

config.yaml's service (cache off, every model loaded); one 30-minute recording of dev-set speech
laid end to end, through the `openai` SDK: streamed (`stream=True`: the time to the first
`transcript.text.delta` and to `transcript.text.done`) and not streamed (`json`), alternating,
`--repeats` times each.

    .venv/bin/python -m benchmarks.bench_streaming [--minutes 30] [--repeats 2]

`--first-only`: only the time to the first delta, without a language and with `language=en`,
alternating, `--repeats` times each (the stream is closed at its first delta, which cancels the
rest of the request):

    .venv/bin/python -m benchmarks.bench_streaming --first-only --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.bench_service import PORT, config_yaml, long_recording
from benchmarks.common import english_dev_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--first-only", action="store_true", help="the first delta only: see the module's doc")
    args = parser.parse_args()
    if args.first_only:
        return first_only(args.minutes, args.repeats)

    import openai

    from benchmarks import launcher

    long_path = Path(tempfile.mkdtemp()) / "long.wav"
    seconds = long_recording([r.path for r in english_dev_set()], args.minutes * 60, long_path)
    service_args, deployments = config_yaml()
    service_args["cache"] = {"enabled": False}
    base = launcher.start(service_args, port=PORT, deployments=deployments)
    first_delta, streamed, plain, deltas = [], [], [], []
    try:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", timeout=1800, max_retries=0)
        for _ in range(args.repeats):
            start = time.perf_counter()
            with open(long_path, "rb") as f:
                events = client.audio.transcriptions.create(model="whisper-1", file=f, stream=True)
                count = 0
                for event in events:
                    if event.type == "transcript.text.delta":
                        count += 1
                        if count == 1:
                            first_delta.append(time.perf_counter() - start)
                    elif event.type == "transcript.text.done":
                        streamed.append(time.perf_counter() - start)
                        text = event.text
            deltas.append(count)
            start = time.perf_counter()
            with open(long_path, "rb") as f:
                whole = client.audio.transcriptions.create(model="whisper-1", file=f)
            plain.append(time.perf_counter() - start)
            assert whole.text == text, "streamed and unstreamed text differ"
    finally:
        launcher.stop()
        long_path.unlink(missing_ok=True)

    print(f"machine: {os.cpu_count()} cores; one {seconds / 60:.0f}-minute recording; config.yaml, cache off")
    print("| run | first delta s | whole s | deltas |\n|---|---|---|---|")
    for i in range(args.repeats):
        print(f"| {i + 1} streamed | {first_delta[i]:.2f} | {streamed[i]:.1f} | {deltas[i]} |")
        print(f"| {i + 1} not streamed (json) | | {plain[i]:.1f} | |")
    ratio = statistics.median(streamed) / statistics.median(plain)
    print(
        f"\nmedian: first delta {statistics.median(first_delta):.2f} s; whole streamed "
        f"{statistics.median(streamed):.1f} s vs not {statistics.median(plain):.1f} s ({ratio:.3f}x); same text"
    )


def first_only(minutes: float, repeats: int) -> None:
    import openai

    from benchmarks import launcher

    long_path = Path(tempfile.mkdtemp()) / "long.wav"
    seconds = long_recording([r.path for r in english_dev_set()], minutes * 60, long_path)
    service_args, deployments = config_yaml()
    service_args["cache"] = {"enabled": False}
    base = launcher.start(service_args, port=PORT, deployments=deployments)
    firsts: dict[str, list[float]] = {"no language": [], "language=en": []}
    try:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", timeout=1800, max_retries=0)
        for _ in range(repeats):
            for label, given in (("no language", {}), ("language=en", {"language": "en"})):
                start = time.perf_counter()
                with open(long_path, "rb") as f:
                    events = client.audio.transcriptions.create(model="whisper-1", file=f, stream=True, **given)
                    for event in events:
                        if event.type == "transcript.text.delta":
                            firsts[label].append(time.perf_counter() - start)
                            break
                    events.response.close()  # the rest of the request is cancelled
                time.sleep(2.0)  # the cancelled request's chunks leave the Transcriber
    finally:
        launcher.stop()
        long_path.unlink(missing_ok=True)
    print(f"machine: {os.cpu_count()} cores; one {seconds / 60:.0f}-minute recording; config.yaml, cache off")
    print("| request | first delta s, each run | median |\n|---|---|---|")
    for label, times in firsts.items():
        print(f"| {label} | {', '.join(f'{t:.2f}' for t in times)} | {statistics.median(times):.2f} |")


if __name__ == "__main__":
    main()
