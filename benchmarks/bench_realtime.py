"""Question: how long after the end of speech does a live session's utterance come back, and are
its words those of the same audio sent as a file?

config.yaml's service (cache off); one Realtime transcription session (WebSocket, OpenAI's
events) streaming the English dev set's recordings at real-time pace, one utterance each,
committed by the client at its end (`turn_detection: null`); the delay from the commit (the end
of speech) to its `.completed` event, and the WER of the joined transcripts against the
references and against the same files sent to /v1/audio/transcriptions.

    .venv/bin/python -m benchmarks.bench_realtime [--files 12] [--language en]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import time

from benchmarks.bench_service import PORT, config_yaml
from benchmarks.common import english_dev_set
from benchmarks.evaluation import corpus_wer

RATE, STEP_S = 24000, 0.1
COMPLETED = "conversation.item.input_audio_transcription.completed"


def pcm24k(path) -> bytes:
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-f", "s16le", "-ac", "1"]
    return subprocess.run([*command, "-ar", str(RATE), "-"], check=True, capture_output=True).stdout


async def session(url: str, paths: list, language: str | None) -> tuple[list[str], list[float]]:
    from websockets.asyncio.client import connect

    transcripts, delays = [], []
    async with connect(url, max_size=None) as ws:
        await ws.recv()  # session.created
        audio_input = {"transcription": {"model": "whisper-1", "language": language}, "turn_detection": None}
        await ws.send(
            json.dumps(
                {"type": "session.update", "session": {"type": "transcription", "audio": {"input": audio_input}}}
            )
        )
        await ws.recv()  # session.updated
        for path in paths:
            pcm, step = pcm24k(path), int(RATE * STEP_S) * 2
            started = time.monotonic()
            for i, at in enumerate(range(0, len(pcm), step)):
                await asyncio.sleep(max(0.0, started + i * STEP_S - time.monotonic()))
                chunk = base64.b64encode(pcm[at : at + step]).decode()
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            ended = time.monotonic()
            while (event := json.loads(await ws.recv()))["type"] != COMPLETED:
                assert event["type"] == "input_audio_buffer.committed", event
            delays.append(time.monotonic() - ended)
            transcripts.append(event["transcript"])
    return transcripts, delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--language", default="en", help="'' to have the session identify it")
    args = parser.parse_args()

    import openai

    from benchmarks import launcher

    references = english_dev_set()[: args.files]
    service_args, deployments = config_yaml()
    service_args["cache"] = {"enabled": False}
    base = launcher.start(service_args, port=PORT, deployments=deployments)
    try:
        url = base.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
        live, delays = asyncio.run(session(url, [r.path for r in references], args.language or None))
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", timeout=600, max_retries=0)
        as_files = []
        for r in references:
            with open(r.path, "rb") as f:
                as_files.append(
                    client.audio.transcriptions.create(model="whisper-1", file=f, language=args.language or None).text
                )
    finally:
        launcher.stop()

    texts = [r.text for r in references]
    seconds = sum(r.duration for r in references)
    p50, p95 = statistics.median(delays), statistics.quantiles(delays, n=20, method="inclusive")[18]
    print(f"machine: {os.cpu_count()} cores; config.yaml, cache off; one session, {len(references)} utterances")
    print(f"({seconds:.0f} s of speech)\n| end of speech -> completed | p50 s | p95 s | max s |\n|---|---|---|---|")
    print(f"| one session at real-time pace | {p50:.2f} | {p95:.2f} | {max(delays):.2f} |")
    print(f"WER vs references: live {corpus_wer(texts, live):.2%}, as files {corpus_wer(texts, as_files):.2%}")


if __name__ == "__main__":
    main()
