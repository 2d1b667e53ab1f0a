"""Question: how long after the end of speech does a live session's utterance come back, and are
its words those of the same audio sent as a file?

config.yaml's service (cache off); a Realtime transcription session (WebSocket, OpenAI's
events) streaming the English dev set's recordings at real-time pace, in each turn-detection mode:
- `manual` (`turn_detection: null`): one utterance per recording, committed by the client at its
  end; the delay from the commit (the end of speech) to its `.completed` event;
- `server_vad` (OpenAI's default settings): each recording followed by 1.5 s of silence, the
  server finds and commits the turns; the delay from the end of the recording's speech (its last
  sample sent) to its last turn's `.completed`.
The WER of the joined transcripts against the references and against the same files sent to
/v1/audio/transcriptions.

    .venv/bin/python -m benchmarks.bench_realtime [--files 12] [--language en] [--modes manual,server_vad]
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
DELTA = "conversation.item.input_audio_transcription.delta"


def pcm24k(path) -> bytes:
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-f", "s16le", "-ac", "1"]
    return subprocess.run([*command, "-ar", str(RATE), "-"], check=True, capture_output=True).stdout


async def session(url: str, paths: list, language: str | None) -> tuple[list[str], list[float]]:
    """manual: the client commits each recording."""
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
                assert event["type"] in ("input_audio_buffer.committed", DELTA), event
            delays.append(time.monotonic() - ended)
            transcripts.append(event["transcript"])
    return transcripts, delays


async def vad_session(url: str, paths: list, language: str | None) -> tuple[list[str], list[float], int]:
    """server_vad: the server commits the turns; returns each recording's joined transcripts, the
    delays, and how many turns it found."""
    from websockets.asyncio.client import connect

    transcripts, delays, turns = [], [], 0
    async with connect(url, max_size=None) as ws:
        await ws.recv()  # session.created
        audio_input = {"transcription": {"model": "whisper-1", "language": language}}  # server_vad: the default
        update = {"type": "session.update", "session": {"type": "transcription", "audio": {"input": audio_input}}}
        await ws.send(json.dumps(update))
        await ws.recv()  # session.updated
        events: list[tuple[float, dict]] = []

        async def read() -> None:
            while True:
                events.append((time.monotonic(), json.loads(await ws.recv())))

        reader = asyncio.create_task(read())
        for path in paths:
            first, speech = len(events), pcm24k(path)
            pcm, step = speech + bytes(int(RATE * 1.5) * 2), int(RATE * STEP_S) * 2
            started = time.monotonic()
            for i, at in enumerate(range(0, len(pcm), step)):
                await asyncio.sleep(max(0.0, started + i * STEP_S - time.monotonic()))
                if at >= len(speech) > at - step:
                    spoken = time.monotonic()  # the recording's last sample went out with the append before
                chunk = base64.b64encode(pcm[at : at + step]).decode()
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            while True:  # until every turn that started is transcribed
                mine = [e for _, e in events[first:]]
                assert not [e for e in mine if e["type"] == "error"], mine
                opened = [e["item_id"] for e in mine if e["type"] == "input_audio_buffer.speech_started"]
                done = {e["item_id"]: e["transcript"] for e in mine if e["type"] == COMPLETED}
                if opened and set(opened) <= set(done):
                    break
                await asyncio.sleep(0.05)
            last = max(t for t, e in events[first:] if e["type"] == COMPLETED)
            transcripts.append(" ".join(done[item] for item in opened))
            delays.append(last - spoken)
            turns += len(opened)
        reader.cancel()
    return transcripts, delays, turns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--language", default="en", help="'' to have the session identify it")
    parser.add_argument("--modes", default="manual,server_vad", help="turn detection: manual, server_vad or both")
    args = parser.parse_args()
    modes = args.modes.split(",")

    import openai

    from benchmarks import launcher

    references = english_dev_set()[: args.files]
    service_args, deployments = config_yaml()
    service_args["cache"] = {"enabled": False}
    base = launcher.start(service_args, port=PORT, deployments=deployments)
    try:
        url = base.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
        paths, language = [r.path for r in references], args.language or None
        runs = {}
        if "manual" in modes:
            runs["manual"] = (*asyncio.run(session(url, paths, language)), len(paths))
        if "server_vad" in modes:
            runs["server_vad"] = asyncio.run(vad_session(url, paths, language))
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
    print(f"machine: {os.cpu_count()} cores; config.yaml, cache off; one session, {len(references)} recordings")
    print(f"({seconds:.0f} s of speech) at real-time pace; WER as files: {corpus_wer(texts, as_files):.2%}\n")
    print(
        "| turn detection | turns | end of speech -> completed p50 s | p95 s | max s | WER live | WER live vs files |"
    )
    print("|---|---|---|---|---|---|---|")
    for mode, (live, delays, turns) in runs.items():
        p50, p95 = statistics.median(delays), statistics.quantiles(delays, n=20, method="inclusive")[18]
        wer, vs_files = corpus_wer(texts, live), corpus_wer(as_files, live)
        print(f"| {mode} | {turns} | {p50:.2f} | {p95:.2f} | {max(delays):.2f} | {wer:.2%} | {vs_files:.2%} |")


if __name__ == "__main__":
    main()
