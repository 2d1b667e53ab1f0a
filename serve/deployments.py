"""Model-holding deployments: Transcriber (batched across requests), Aligner, Diarizer, Vad.
Audio reaches them as the object-store ref the ingress put once; replicas read it zero-copy."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import ray
from ray import serve
from ray.serve.metrics import Counter, Gauge, Histogram

from cluster import asr_memory
from cluster.gpu import default_reader
from cluster.placement import from_ray
from pipeline.align import Aligner
from pipeline.asr import DecodeOptions
from pipeline.asr_models import AsrModels
from pipeline.batch_size import BatchLimit, Split, decode_in_halves, memory_cap
from pipeline.config import PipelineConfig
from pipeline.diarize import Diarizer, SpeakerCount
from pipeline.diarize.known import SpeakerReference
from pipeline.models import AsrCard
from pipeline.placement import Placement
from pipeline.schema import SAMPLE_RATE, Audio, Chunk, ChunkResult, Segment, Turn
from pipeline.turns import FrameGrid
from pipeline.vad import VAD_MODEL_ID, SpeechDetector, SpeechMap, VadOptions
from serve.config import DEFAULT_BATCHING
from serve.fair_queue import FairQueue

log = logging.getLogger("whisperx_serve")


@dataclass
class AudioRef:
    """A request's decoded samples in the object store (put once by the ingress). `fetch()` and
    `release()` drop the replica's copy of the ref (the ingress's stays live for a resent call):
    Serve's batch loop keeps the last batch's arguments, which would pin finished requests' samples."""

    ref: ray.ObjectRef | None
    duration: float

    async def fetch(self) -> np.ndarray:
        ref, self.ref = self.ref, None
        if ref is None:
            raise RuntimeError("this AudioRef was already read or released in this replica")
        return await ref

    def release(self) -> None:
        self.ref = None


@dataclass(frozen=True)
class ChunkJob:
    request_id: str
    audio: AudioRef
    index: int
    start: float
    end: float
    options: DecodeOptions
    # The VAD's speech regions inside [start, end] (pipeline.intervals.Regions.within): word
    # times are kept on them. Empty: not known, and words are bounded by their length only.
    speech: tuple[tuple[float, float], ...] = ()
    live: bool = False  # a live utterance's chunk: its turn comes ahead of bulk work's


@dataclass(frozen=True)
class ChunkOutcome:
    result: ChunkResult
    batch_size: int  # chunks decoded together in this chunk's batch
    batch_requests: int  # distinct requests those chunks came from
    decode_seconds: float


# Concurrent batches per replica: with two CTranslate2 workers they decode in parallel (on CPU,
# one core each); with one worker the second waits in CTranslate2's queue, already formed.
CONCURRENT_BATCHES = 2


# Every chunk call waits inside the replica, in its request's fair queue (a chunk is a small
# job holding an object ref): a cap here would queue the rest first come, first served in the
# callers' routers, behind a long request's chunks.
@serve.deployment(name="Transcriber", max_ongoing_requests=100_000)
class TranscriberDeployment:
    def __init__(self, config: PipelineConfig, threads: int | None = None):
        placement = from_ray(threads)
        # On a GPU, read before the model loads: what the device's neighbours leave this replica.
        reader = default_reader() if placement.device == "cuda" else None
        before_load = reader.read(placement.gpu_index) if reader else None
        # Serve forms the batches; the engine only shares each one among its CTranslate2 workers.
        self.engine = AsrModels(replace(config.asr, batch_size=1024), placement)
        self._batch_size = Histogram(
            "whisperx_asr_batch_size", description="chunks per ASR batch", boundaries=[1, 2, 4, 8, 16, 32, 64]
        )
        self._chunks = Counter("whisperx_asr_chunks", description="chunks decoded")
        self._max_batch = Gauge(
            "whisperx_asr_max_batch_size", description="max_batch_size in force (batch_size_source)"
        )
        self._oom_counter = Counter("whisperx_asr_oom_splits", description="ASR batches halved after out of memory")
        self._live_waiting = Gauge("whisperx_asr_live_chunks_waiting", description="live utterances' chunks queued")
        self._batching = dict(DEFAULT_BATCHING)
        self._heap = _HeapTrimmer()
        # Turns into the batch queue, fair across requests: at most what the batches hold at once.
        self._turns = FairQueue(CONCURRENT_BATCHES * self._batching["max_batch_size"])
        # The configured max_batch_size stays the ceiling; on a GPU the memory the share leaves
        # for batches (probe batches, measured once here) caps it too. None: CPU, or not readable.
        self._memory = None
        if before_load is not None:
            try:
                self._memory = asr_memory.measure(
                    self.engine, reader, placement, before_load, model_ids=self.engine.model_ids
                )
            except Exception as exc:  # noqa: BLE001 - the probe only refines the size: never fail the replica
                log.warning("GPU memory probe failed (%s): the configured max_batch_size applies", exc)
        self._limit = BatchLimit(self._batching["max_batch_size"], memory_cap(self._memory) if self._memory else None)
        self._oom_splits = 0
        self._decoded = 0
        self._apply_limit()
        if self._memory:
            log.info("Transcriber batch size %d (%s): %s", self._limit.size, self._limit.source, self._memory)

    def _apply_limit(self) -> None:
        size = self._limit.size
        self._batching["max_batch_size"] = size
        self._decode_batch.set_max_batch_size(size)
        self._turns.resize(CONCURRENT_BATCHES * size)
        self._max_batch.set(size)

    def reconfigure(self, user_config: dict) -> None:
        """max_batch_size / batch_wait_timeout_s from user_config, changed without a restart.
        A new max_batch_size is the ceiling: GPU memory and out-of-memory caps still apply."""
        if "max_batch_size" in user_config:
            self._limit = replace(self._limit, configured=int(user_config["max_batch_size"]))
            self._apply_limit()
        if "batch_wait_timeout_s" in user_config:
            self._batching["batch_wait_timeout_s"] = float(user_config["batch_wait_timeout_s"])
            self._decode_batch.set_batch_wait_timeout_s(self._batching["batch_wait_timeout_s"])

    def card(self) -> tuple[AsrCard, ...]:
        """Every model this replica holds, the configured `model` first."""
        return self.engine.cards

    def info(self) -> dict:
        first = self.engine.first
        return {
            **_replica_info(first.model_id, self.engine.placement),
            "models": list(self.engine.model_ids),
            "compute_type": first.compute_type,
            "workers": first.num_workers,
            "threads_per_worker": first.cpu_threads,
            **self._batching,
            "batch_size_source": self._limit.source,
            "gpu_memory": {**asdict(self._memory), "max_batch_size": self._limit.memory} if self._memory else None,
            "oom_splits": self._oom_splits,
            "batches_decoding": self._heap.busy,  # batches this replica decodes now
            "chunks_waiting": self._turns.waiting,  # for a turn in the batch queue
            "live_chunks_waiting": self._turns.live_waiting,  # of them, live utterances' (served first)
            "chunks_decoded": self._decoded,  # since the replica started
        }

    async def detect_language(
        self, audio: AudioRef, regions: list[tuple[float, float]], model: str = "", candidates: tuple[str, ...] = ()
    ) -> tuple[str, float]:
        """(language, confidence): the vote over the chunks the plan sampled, by the model it
        named, among its candidates."""
        samples = await audio.fetch()
        chunks = [_chunk("detect", i, s, e, samples) for i, (s, e) in enumerate(regions)]
        return await asyncio.to_thread(self.engine.detect_language, chunks, model, candidates)

    async def transcribe(self, job: ChunkJob) -> ChunkOutcome:
        """One chunk, decoded in a batch with other requests' chunks once its request's turn
        comes (live utterances first, then the request served least so far: serve/fair_queue.py)."""
        try:
            if job.live:  # the gauge counts it from now (it waits, or is granted at once)
                self._live_waiting.set(self._turns.live_waiting + 1)
            async with self._turns.turn(job.request_id, job.end - job.start, job.live):
                if job.live:
                    self._live_waiting.set(self._turns.live_waiting)
                return await self._decode_batch(job)
        finally:
            if job.live:
                self._live_waiting.set(self._turns.live_waiting)
            job.audio.release()  # read or not, this replica's copy of the ref is done

    @serve.batch(
        max_batch_size=DEFAULT_BATCHING["max_batch_size"],
        batch_wait_timeout_s=DEFAULT_BATCHING["batch_wait_timeout_s"],
        max_concurrent_batches=CONCURRENT_BATCHES,
    )
    async def _decode_batch(self, jobs: list[ChunkJob]) -> list[ChunkOutcome]:
        self._turns.batch_started({j.request_id for j in jobs})  # a newcomer's batch is formed
        arrays = {}
        for job in jobs:
            if job.request_id not in arrays:
                arrays[job.request_id] = await job.audio.fetch()
            else:
                job.audio.release()
        chunks = [_chunk(j.request_id, j.index, j.start, j.end, arrays[j.request_id], j.speech) for j in jobs]
        started = time.perf_counter()
        self._heap.busy += 1
        try:
            split = await asyncio.to_thread(
                decode_in_halves, self._decode, list(zip(chunks, [j.options for j in jobs]))
            )
        finally:
            self._heap.busy -= 1
        elapsed = time.perf_counter() - started
        results = split.results
        if split.splits:
            self._after_oom(split, len(jobs))
        await self._heap.trim_if_idle()
        self._batch_size.observe(len(jobs))
        self._chunks.inc(len(jobs))
        self._decoded += len(jobs)
        requests = len({j.request_id for j in jobs})
        return [ChunkOutcome(r, len(jobs), requests, elapsed) for r in results]

    def _decode(self, pairs: list[tuple[Chunk, DecodeOptions]]) -> list[ChunkResult]:
        return self.engine.transcribe_chunks([c for c, _ in pairs], [o for _, o in pairs])

    def _after_oom(self, split: Split, size: int) -> None:
        """A batch ran out of GPU memory and was decoded in halves: later batches are no
        larger than the half that worked."""
        self._oom_splits += split.splits
        self._oom_counter.inc(split.splits)
        if split.worked is not None:
            self._limit = self._limit.after_oom(split.worked)
            self._apply_limit()
        log.warning(
            "ASR batch of %d ran out of GPU memory: split %d times; max_batch_size now %d (%s)",
            size,
            split.splits,
            self._limit.size,
            self._limit.source,
        )


class _HeapTrimmer:
    """Gives freed heap back to the OS (glibc `malloc_trim`) when the replica is idle, at most
    every 10 s, in the background; an idle replica always ends trimmed. Without it glibc's
    per-thread arenas kept freed batch buffers: RSS crept 3-9 % over a 10-minute soak."""

    INTERVAL_S = 10.0

    def __init__(self):
        self.busy = 0
        self._last = 0.0
        self._scheduled: asyncio.Task | None = None
        self._again = False
        try:
            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc: nothing to do
            self._trim = None

    async def trim_if_idle(self) -> None:
        if self._trim is None or self.busy:
            return
        if self._scheduled is not None:  # a trim is waiting or running: it goes again after
            self._again = True
            return
        wait = max(0.0, self._last + self.INTERVAL_S - time.monotonic())
        self._scheduled = asyncio.get_running_loop().create_task(self._trim_after(wait))

    async def _trim_after(self, wait: float) -> None:
        try:
            await asyncio.sleep(wait)
            self._again = False
            if not self.busy:
                self._last = time.monotonic()
                await asyncio.to_thread(self._trim, 0)
        finally:
            self._scheduled = None
        if self._again:  # a call ended while this trim ran: its garbage is trimmed too
            self._again = False
            await self.trim_if_idle()


def _chunk(audio_id: str, index: int, start: float, end: float, samples: np.ndarray, speech: tuple = ()) -> Chunk:
    piece = samples[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
    return Chunk(audio_id=audio_id, index=index, start=start, end=end, samples=piece, speech=tuple(speech))


def _replica_info(model: str, placement: Placement) -> dict:
    """What every model replica reports of itself: its model, process and placement."""
    return {
        "model": model,
        "pid": os.getpid(),
        "device": placement.device,
        "cpu_threads": placement.cpu_threads,
        "gpu_share": placement.gpu_share,
        "gpu_ids": list(placement.gpu_ids),  # Ray's ids (logical ones with WXS_LOGICAL_GPUS)
        "node_id": ray.get_runtime_context().get_node_id(),
    }


class _ModelCalls:
    """A replica's model calls, off the event loop, at most `limit` at once (bounded memory;
    concurrent torch forwards share batches), counted for `info()` (the tests kill busy
    replicas); the heap is trimmed once none is left."""

    def __init__(self, limit: int, placement: Placement):
        self.limit, self.placement = limit, placement  # what Ray gave this replica
        self._slots = threading.Semaphore(limit)
        self.calls = 0
        self._heap = _HeapTrimmer()

    async def run(self, fn, *args):
        def bounded():
            with self._slots:
                return fn(*args)

        self.calls += 1
        self._heap.busy += 1
        try:
            return await asyncio.to_thread(bounded)
        finally:
            self.calls -= 1
            self._heap.busy -= 1
            await self._heap.trim_if_idle()

    def info(self, engine: str) -> dict:
        return {**_replica_info(engine, self.placement), "calls": self.calls, "concurrent_calls": self.limit}


# How long a deferred model waits for the model loaded first before it loads anyway.
LOAD_FIRST_WAIT_S = 300.0


class _DeferredEngine:
    """A replica's model, loaded in the background once `first` (the Transcriber's handle)
    answers, or at once without it (the replica's constructor then waits for it). On a CPU
    machine models loading together share its cores and each takes that much longer: the
    Transcriber (and the ingress's VAD) are what /healthz and every request wait for, this model
    only the requests that use it, and those wait here."""

    def __init__(self, load, first=None):
        self._task = asyncio.get_running_loop().create_task(self._load(load, first))

    @staticmethod
    async def _load(load, first):
        if first is not None:
            try:
                await asyncio.wait_for(first.card.remote(), LOAD_FIRST_WAIT_S)
            except Exception as exc:  # noqa: BLE001 - the order only saves time: load regardless
                log.warning("loading without waiting for the Transcriber: %s", exc)
        return await asyncio.to_thread(load)

    @property
    def loaded(self):
        """The model once loaded, else None."""
        return self._task.result() if self._task.done() and self._task.exception() is None else None

    def check(self) -> None:
        """Serve's health check: a model that failed to load fails the replica (it is replaced)."""
        if self._task.done() and self._task.exception() is not None:
            raise RuntimeError(f"model failed to load: {self._task.exception()!r}")

    async def get(self):
        return await asyncio.shield(self._task)


@serve.deployment(name="Aligner", max_ongoing_requests=8)
class AlignerDeployment:
    async def __init__(
        self, config: PipelineConfig, threads: int | None = None, concurrent_calls: int = 1, load_after=None
    ):
        self._calls = _ModelCalls(concurrent_calls, from_ray(threads))
        self._model = str(config.align.model)
        self._engine = _DeferredEngine(lambda: Aligner(config.align, self._calls.placement), load_after)
        if load_after is None:  # loaded before the replica counts as running, as any model
            await self._engine.get()

    def check_health(self) -> None:
        self._engine.check()

    def info(self) -> dict:
        return {**self._calls.info(self._model), "loading": self._engine.loaded is None}

    async def align(self, audio: AudioRef, results: list[ChunkResult], language: str) -> list[Segment]:
        samples = await audio.fetch()
        engine = await self._engine.get()
        return await self._calls.run(engine.align, Audio(samples), results, language)


@serve.deployment(name="Diarizer", max_ongoing_requests=8)
class DiarizerDeployment:
    async def __init__(
        self, config: PipelineConfig, threads: int | None = None, concurrent_calls: int = 1, load_after=None
    ):
        self._calls = _ModelCalls(concurrent_calls, from_ray(threads))
        self._model = str(config.diarize.model or "offline")
        self._engine = _DeferredEngine(lambda: Diarizer(config.diarize, self._calls.placement), load_after)
        if load_after is None:  # loaded before the replica counts as running, as any model
            await self._engine.get()

    def check_health(self) -> None:
        self._engine.check()

    def info(self) -> dict:
        engine = self._engine.loaded
        batches = {name: asdict(stats) for name, stats in engine.batch_stats().items()} if engine else {}
        return {**self._calls.info(self._model), "loading": engine is None, "batches": batches}

    async def diarize(
        self,
        audio: AudioRef,
        speech: list[tuple[float, float]],
        count: SpeakerCount,
        references: tuple[SpeakerReference, ...] = (),
    ) -> list[Turn]:
        samples = await audio.fetch()
        engine = await self._engine.get()
        return await self._calls.run(engine.diarize, Audio(samples), speech, count, references)


@serve.deployment(name="Vad", max_ongoing_requests=16)
class VadDeployment:
    """The VAD in its own replicas (vad_placement "deployment"): the ingress only reads, admits
    and fans out. Concurrent calls share the segmentation model's forwards (SpeechDetector's
    ForwardBatcher), which batches windows across requests as the Transcriber batches chunks."""

    def __init__(self, config: PipelineConfig, threads: int | None = None, concurrent_calls: int = 1):
        self._calls = _ModelCalls(concurrent_calls, from_ray(threads))
        self.engine = SpeechDetector(config.vad, self._calls.placement)

    def info(self) -> dict:
        return self._calls.info(VAD_MODEL_ID)

    async def analyze(self, audio: AudioRef, regions: VadOptions | None = None) -> SpeechMap:
        samples = await audio.fetch()
        return await self._calls.run(self.engine.analyze, Audio(samples), regions)

    def frame_grid(self) -> FrameGrid:
        return self.engine.frame_grid()

    async def window_scores(self, samples: np.ndarray) -> np.ndarray:
        """A live stream's window (serve/realtime.py's server VAD), in the files' forwards."""
        return await self._calls.run(self.engine.window_scores, samples)
