"""Model-holding deployments: Transcriber (batched across requests), Aligner, Diarizer.

Audio reaches them once per request as an object-store reference put by the ingress; each
replica reads it zero-copy and slices its chunks out of it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass

import numpy as np
import ray
from ray import serve
from ray.serve.metrics import Counter, Histogram

from pipeline.align import AlignConfig, Aligner
from pipeline.asr import AsrConfig, DecodeOptions, Transcriber
from pipeline.diarize import DiarizeConfig, Diarizer, SpeakerCount
from pipeline.schema import SAMPLE_RATE, Audio, Chunk, ChunkResult, Segment, Turn
from serve.config import ServiceConfig

log = logging.getLogger("whisperx_serve")


@dataclass(frozen=True)
class AudioRef:
    """A request's decoded samples in the object store (put once by the ingress)."""

    ref: ray.ObjectRef
    duration: float


@dataclass(frozen=True)
class ChunkJob:
    request_id: str
    audio: AudioRef
    index: int
    start: float
    end: float
    options: DecodeOptions


@dataclass(frozen=True)
class ChunkOutcome:
    result: ChunkResult
    batch_size: int          # chunks decoded together in this chunk's batch
    batch_requests: int      # distinct requests those chunks came from
    decode_seconds: float


def replica_device() -> str:
    """The device this replica really has: a GPU only if Ray assigned one."""
    return "cuda" if ray.get_gpu_ids() else "cpu"


async def fetch(audio: AudioRef) -> np.ndarray:
    return await audio.ref


@serve.deployment(name="Transcriber", max_ongoing_requests=64)
class TranscriberDeployment:
    def __init__(self, config: ServiceConfig, asr_model: str, compute_type: str | None):
        # batch_size: Serve forms the batches; the engine must not split them further.
        self.engine = Transcriber(AsrConfig(model=asr_model, device=replica_device(), compute_type=compute_type,
                                            cpu_threads=config.cpu_threads, num_workers=config.asr_workers,
                                            batch_size=1024))
        self._batch_size = Histogram("whisperx_asr_batch_size", description="chunks per ASR batch",
                                     boundaries=[1, 2, 4, 8, 16, 32, 64])
        self._chunks = Counter("whisperx_asr_chunks", description="chunks decoded")
        self._batching = {"max_batch_size": 4, "batch_wait_timeout_s": 0.01}

    def reconfigure(self, user_config: dict) -> None:
        """max_batch_size / batch_wait_timeout_s from user_config, changed without a restart."""
        if "max_batch_size" in user_config:
            self._batching["max_batch_size"] = int(user_config["max_batch_size"])
            self.transcribe.set_max_batch_size(self._batching["max_batch_size"])
        if "batch_wait_timeout_s" in user_config:
            self._batching["batch_wait_timeout_s"] = float(user_config["batch_wait_timeout_s"])
            self.transcribe.set_batch_wait_timeout_s(self._batching["batch_wait_timeout_s"])

    def info(self) -> dict:
        return {"model": self.engine.model_id, "pid": os.getpid(), "multilingual": self.engine.is_multilingual,
                "languages": self.engine.languages, "device": self.engine.device,
                "compute_type": self.engine.compute_type, "workers": self.engine.num_workers,
                "threads_per_worker": self.engine.cpu_threads, **self._batching}

    async def detect_language(self, audio: AudioRef, regions: list[tuple[float, float]]) -> str:
        samples = await fetch(audio)
        chunks = [_chunk("detect", i, s, e, samples) for i, (s, e) in enumerate(regions)]
        language, _ = await asyncio.to_thread(self.engine.detect_language, chunks)
        return language

    # Two batches at once: with two CTranslate2 workers they decode in parallel (on CPU, one
    # core each); with one worker the second waits in CTranslate2's queue, already formed.
    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01, max_concurrent_batches=2)
    async def transcribe(self, jobs: list[ChunkJob]) -> list[ChunkOutcome]:
        arrays = {}
        for job in jobs:
            if job.request_id not in arrays:
                arrays[job.request_id] = await fetch(job.audio)
        chunks = [_chunk(j.request_id, j.index, j.start, j.end, arrays[j.request_id]) for j in jobs]
        started = time.perf_counter()
        results = await asyncio.to_thread(self.engine.transcribe_chunks, chunks, [j.options for j in jobs])
        elapsed = time.perf_counter() - started
        self._batch_size.observe(len(jobs))
        self._chunks.inc(len(jobs))
        requests = len({j.request_id for j in jobs})
        return [ChunkOutcome(r, len(jobs), requests, elapsed) for r in results]


def _chunk(audio_id: str, index: int, start: float, end: float, samples: np.ndarray) -> Chunk:
    return Chunk(audio_id=audio_id, index=index, start=start, end=end,
                 samples=samples[int(start * SAMPLE_RATE): int(end * SAMPLE_RATE)])


@serve.deployment(name="Aligner", max_ongoing_requests=8)
class AlignerDeployment:
    def __init__(self, config: ServiceConfig, align_model: str, max_loaded_models: int = 2):
        self.engine = Aligner(AlignConfig(model=align_model, device=replica_device(),
                                          max_loaded_models=max_loaded_models))
        self._lock = threading.Lock()   # one alignment at a time per replica: bounded memory

    def model_id(self, language: str) -> str:
        return self.engine.model_id(language)

    async def align(self, audio: AudioRef, results: list[ChunkResult], language: str) -> list[Segment]:
        samples = await fetch(audio)

        def run() -> list[Segment]:
            with self._lock:
                return self.engine.align(Audio(samples), results, language)

        return await asyncio.to_thread(run)


@serve.deployment(name="Diarizer", max_ongoing_requests=8)
class DiarizerDeployment:
    def __init__(self, config: ServiceConfig, diarize_model: str | None):
        self.engine = Diarizer(DiarizeConfig(model=diarize_model, device=replica_device()))
        self._lock = threading.Lock()

    def model_id(self) -> str:
        return self.engine.model_id

    async def diarize(self, audio: AudioRef, speech: list[tuple[float, float]], count: SpeakerCount) -> list[Turn]:
        samples = await fetch(audio)

        def run() -> list[Turn]:
            with self._lock:
                return self.engine.diarize(Audio(samples), speech, count)

        return await asyncio.to_thread(run)
