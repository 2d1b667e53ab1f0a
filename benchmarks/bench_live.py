"""Question: how many live streams does the service hold in real time, alone and while uploads
keep it busy, and what do the streams cost the uploads?

config.yaml's service (cache off). A stream is a Realtime transcription session (server VAD,
OpenAI's defaults, language en) playing English dev-set recordings back to back, 1.5 s of
silence after each, at real-time pace without ever waiting for an answer, as a microphone does.
Each turn's delay is from the end of its speech (its `audio_end_ms` less the 500 ms of silence
that ends a turn, sent at real-time pace from the stream's start) to its `.completed`. Upload
clients post dev-set files to /v1/audio/transcriptions one after another for as long as the
streams play. For 1, 4 and 8 streams, alone and beside the upload clients, and the uploads
alone: the delays (p50, p95), the streams' WER against the references, the uploads'
throughput (audio seconds per second). A stream is held in real time when p95 <= 2 s.

    .venv/bin/python -m benchmarks.bench_live [--streams 1,4,8] [--uploads 8] [--files 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import threading
import time

from benchmarks.bench_realtime import COMPLETED, RATE, STEP_S, pcm24k
from benchmarks.bench_service import PORT, config_yaml
from benchmarks.common import english_dev_set
from benchmarks.evaluation import corpus_wer

SILENCE_S = 1.5  # after each recording: the last turn ends
HELD_P95_S = 2.0  # a caption later than this is late (issue 43)


async def stream(url: str, refs: list) -> tuple[list[float], str, str]:
    """One stream: its turns' delays, its joined transcript, its reference."""
    from websockets.asyncio.client import connect

    pcm = b"".join(pcm24k(r.path) + bytes(int(RATE * SILENCE_S) * 2) for r in refs)
    async with connect(url, max_size=None) as ws:
        await ws.recv()  # session.created
        audio_input = {"transcription": {"model": "whisper-1", "language": "en"}}  # server VAD: the default
        await ws.send(
            json.dumps(
                {"type": "session.update", "session": {"type": "transcription", "audio": {"input": audio_input}}}
            )
        )
        events: list[tuple[float, dict]] = []

        async def read() -> None:
            while True:
                events.append((time.monotonic(), json.loads(await ws.recv())))

        reader = asyncio.create_task(read())
        step, started = int(RATE * STEP_S) * 2, time.monotonic()
        for i, at in enumerate(range(0, len(pcm), step)):
            await asyncio.sleep(max(0.0, started + i * STEP_S - time.monotonic()))
            await ws.send(
                json.dumps(
                    {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[at : at + step]).decode()}
                )
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until every turn that started is answered
            opened = {e["item_id"] for _, e in events if e["type"] == "input_audio_buffer.speech_started"}
            answered = {
                e["item_id"]
                for _, e in events
                if e["type"] in (COMPLETED, "conversation.item.input_audio_transcription.failed")
            }
            if opened <= answered:
                break
            await asyncio.sleep(0.1)
        reader.cancel()
    stopped = {e["item_id"]: e["audio_end_ms"] for _, e in events if e["type"] == "input_audio_buffer.speech_stopped"}
    order = [e["item_id"] for _, e in events if e["type"] == "input_audio_buffer.committed"]
    done = {e["item_id"]: (t, e["transcript"]) for t, e in events if e["type"] == COMPLETED}
    errors = [e for _, e in events if e["type"] in ("error", "conversation.item.input_audio_transcription.failed")]
    if errors:
        print(f"  stream errors: {errors[:2]}")
    delays = [done[i][0] - (started + (stopped[i] - 500) / 1000) for i in order if i in done and i in stopped]
    text = " ".join(done[i][1] for i in order if i in done)
    return delays, text, " ".join(r.text for r in refs)


def uploads(base: str, clients: int, refs: list, stop: threading.Event) -> tuple[float, float]:
    """Upload clients until `stop`: (audio seconds transcribed, wall seconds)."""
    import openai

    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", timeout=900, max_retries=0)
    done, lock, started = [0.0], threading.Lock(), time.perf_counter()

    def loop(offset: int) -> None:
        i = offset
        while not stop.is_set():
            r = refs[i % len(refs)]
            try:
                with open(r.path, "rb") as f:
                    client.audio.transcriptions.create(model="whisper-1", file=f, language="en")
            except openai.APIStatusError as exc:  # shed (503): come back when told
                stop.wait(float(exc.response.headers.get("retry-after", 1)))
                continue
            with lock:
                done[0] += r.duration
            i += clients

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join()
    return done[0], time.perf_counter() - started


def scenario(base: str, streams: int, upload_clients: int, refs: list, files: int) -> dict:
    url = base.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
    plays = [[refs[(k * files + j) % len(refs)] for j in range(files)] for k in range(streams)]
    stop, result = threading.Event(), {}
    uploader = None
    if upload_clients:
        uploader = threading.Thread(target=lambda: result.setdefault("up", uploads(base, upload_clients, refs, stop)))
        uploader.start()
        time.sleep(5)  # the uploads' queue is built before the streams start

    async def run_streams():
        return await asyncio.gather(*(stream(url, play) for play in plays))

    outcomes = asyncio.run(run_streams()) if streams else []
    if not streams:
        time.sleep(sum(r.duration + SILENCE_S for r in refs[:files]))
    stop.set()
    if uploader:
        uploader.join()
    delays = [d for o in outcomes for d in o[0]]
    row = {"streams": streams, "uploads": upload_clients}
    if delays:
        row["p50"] = statistics.median(delays)
        row["p95"] = statistics.quantiles(delays, n=20, method="inclusive")[18] if len(delays) > 1 else delays[0]
        row["turns"] = len(delays)
        row["wer"] = corpus_wer([o[2] for o in outcomes], [o[1] for o in outcomes])
    if "up" in result:
        seconds, wall = result["up"]
        row["upload_speed"] = seconds / wall
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="1,4,8")
    parser.add_argument("--uploads", type=int, default=8)
    parser.add_argument("--files", type=int, default=5, help="recordings each stream plays")
    args = parser.parse_args()

    from benchmarks import launcher

    refs = english_dev_set()
    service_args, deployments = config_yaml()
    service_args["cache"] = {"enabled": False}
    base = launcher.start(service_args, port=PORT, deployments=deployments, every_model=False)
    rows = []
    try:
        launcher.wait_loaded(base)
        scenario(base, 1, 0, refs, 1)  # warm-up
        counts = [int(n) for n in args.streams.split(",")]
        rows.append(scenario(base, 0, args.uploads, refs, args.files))
        for n in counts:
            for clients in (0, args.uploads):
                rows.append(scenario(base, n, clients, refs, args.files))
                print(rows[-1], flush=True)
    finally:
        launcher.stop()

    alone = next(r["upload_speed"] for r in rows if not r["streams"])
    print(f"machine: {os.cpu_count()} cores; config.yaml, cache off; each stream {args.files} recordings")
    print(
        "| streams | upload clients | turns | end of speech -> completed p50 s | p95 s | held (p95 <= 2 s) "
        "| WER | uploads x real time |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        speed = f"{r['upload_speed']:.1f} ({r['upload_speed'] / alone:.0%} of alone)" if "upload_speed" in r else "-"
        if not r["streams"]:
            print(f"| 0 | {r['uploads']} | - | - | - | - | - | {speed} |")
            continue
        held = "yes" if r["p95"] <= HELD_P95_S else "no"
        cells = [r["streams"], r["uploads"], r["turns"], f"{r['p50']:.2f}", f"{r['p95']:.2f}", held, f"{r['wer']:.2%}"]
        print("| " + " | ".join(str(c) for c in cells) + f" | {speed} |")


if __name__ == "__main__":
    main()
