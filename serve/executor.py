"""The service's executor: the plan (pipeline.plan decides what runs) carried out over the
deployment graph under one admission ticket, each stage's output stored in the result cache."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import ray

from pipeline.audio import AudioLimits, open_audio
from pipeline.cache_entries import AsrEntry, Reused, encode_asr, encode_segments, encode_turns, reuse
from pipeline.cache_keys import StageKeys, audio_digest, stage_keys
from pipeline.intervals import Regions
from pipeline.plan import Plan, Planner, Request
from pipeline.schema import ChunkResult, Transcript
from pipeline.vad import SpeechDetector, SpeechMap
from serve import retry
from serve.admission import Admission, Ticket
from serve.cache_client import CacheClient
from serve.config import STAGE_DEPLOYMENT
from serve.deployments import AudioRef, ChunkJob
from serve.retry import RetryPolicy


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass
class ServiceStats:
    """How the service handled one request (returned by the native endpoint)."""

    request_id: str
    chunks: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    batch_requests: list[int] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    retries: int = 0  # model calls resent because their replica died
    cache: str = "miss"  # X-Cache: hit, partial, miss, or off (not looked up)


@dataclass
class Graph:
    """The means: deployment handles, and the VAD when this replica runs it itself."""

    transcriber: object
    diarizer: object
    aligner: object | None = None
    vad_deployment: object | None = None  # None: `vad` runs in this replica
    vad: SpeechDetector | None = None
    vad_pool: ThreadPoolExecutor | None = None  # concurrent VAD calls share its model's forwards


@dataclass
class GraphExecutor:
    graph: Graph
    planner: Planner
    admission: Admission
    cache: CacheClient | None = None
    # the Ingress sets these from its args (Ingress.reconfigure)
    retry_policy: RetryPolicy = RetryPolicy()
    limits: AudioLimits = AudioLimits()

    async def transcribe(
        self,
        data: bytes,
        request: Request,
        use_cache: bool = True,
        progress: Callable[[Plan, ChunkResult], None] | None = None,
        request_id: str | None = None,
    ) -> tuple[Plan, Transcript, ServiceStats]:
        """The planned transcript of `data`, from the cache where it holds the stages.
        `progress`: called with the routed plan and each chunk's ASR result in audio order, as soon
        as every earlier one is done (a stream's deltas); not called for what the cache answered."""
        started = time.perf_counter()
        plan = self.planner.plan(request)  # bad options: typed errors, before any work
        stats = ServiceStats(request_id=request_id or new_request_id())
        keys = await self._keys(data, plan) if self.cache and use_cache else None
        if keys is None:
            stats.cache = "off"
            plan, transcript = await self._compute(data, plan, stats, None, progress)
        else:
            plan = plan.with_cached(await self._lookup(keys))
            stats.cache = plan.cache_state
            if stats.cache == "hit":
                stats.stages = ["cache"]
                segments = await plan.timed_segments(plan.asr_results(), None)  # nothing left to align
                transcript = plan.assemble(plan.cached.asr.duration, segments, plan.cached.turns)
            else:  # identical requests in flight compute once; the others take the first one's transcript
                (computed, transcript), shared = await self.cache.once(
                    keys.result, lambda: self._compute(data, plan, stats, keys, progress)
                )
                if shared:  # its own plan (the format may differ), in the language found
                    plan = plan.with_language(transcript.language) if plan.detects_language else plan
                    stats = ServiceStats(request_id=stats.request_id, cache="hit", stages=["in-flight"])
                else:
                    plan = computed
        if self.cache:
            self.cache.count(stats.cache)
        stats.seconds.setdefault("total", round(time.perf_counter() - started, 4))  # hits: the ingress's own time
        return plan, transcript, stats

    async def _keys(self, data: bytes, plan: Plan) -> StageKeys | None:
        # sha256 runs at ~1 GB/s: a large upload's off the event loop
        digest = audio_digest(data) if len(data) < 1 << 20 else await asyncio.to_thread(audio_digest, data)
        return stage_keys(plan, digest)

    async def _lookup(self, keys: StageKeys) -> Reused:
        entries = await self.cache.get(keys.lookups())
        if sum(len(e) for e in entries.values()) < 256 << 10:
            return reuse(keys, entries)
        return await asyncio.to_thread(reuse, keys, entries)  # a long transcript's JSON: off the event loop

    async def _compute(
        self,
        data: bytes,
        plan: Plan,
        stats: ServiceStats,
        keys: StageKeys | None,
        progress: Callable[[Plan, ChunkResult], None] | None = None,
    ) -> tuple[Plan, Transcript]:
        """Run the stages the cache did not answer (all of them without a cache), storing what
        they produce under their keys."""
        runs = plan.to_run()
        clock = _Stopwatch(stats.seconds)
        # known speakers' clips: a bad one is a 400 before any work (a few seconds each: cheap)
        references = await asyncio.to_thread(plan.speaker_references) if "diarize" in runs else ()
        with self.admission.admit() as ticket:  # chunk cap: 503 before anything is read
            with open_audio(data, self.limits) as upload:  # size checks only
                await asyncio.to_thread(upload.probe)  # the header: too long -> 413, no decoding
                # the audio seconds each planned stage that admission tracks will queue
                seconds = upload.expected_seconds()
                tracked = [STAGE_DEPLOYMENT[s] for s in runs if STAGE_DEPLOYMENT[s] in self.admission.stages]
                ticket.expect({deployment: seconds for deployment in tracked})
                audio = await asyncio.to_thread(upload.decode, ticket)  # every array reserved first
            ticket.settle(audio.samples.nbytes)
            clock.lap("decode")
            # The audio is held once: scored here before it moves to the object store, or read
            # from there by the Vad deployment.
            speech = None
            if "asr" in runs and self.graph.vad_deployment is None:
                speech = await asyncio.get_running_loop().run_in_executor(
                    self.graph.vad_pool, self.graph.vad.analyze, audio, plan.vad
                )
            duration, audio_ref = audio.duration, AudioRef(ray.put(audio.samples), audio.duration)
            del audio  # the object store holds the samples from here on
            tasks: list[asyncio.Task] = []

            def start(coroutine) -> asyncio.Task:
                tasks.append(asyncio.create_task(coroutine))
                return tasks[-1]

            def tracked(stage: str, seconds: float, method, *args) -> asyncio.Task:
                return start(self._done_after(stats, ticket, stage, seconds, method, *args))

            try:
                if "asr" in runs and speech is None:
                    speech = await self._call(stats, self.graph.vad_deployment.analyze, audio_ref, plan.vad)
                if speech is not None:
                    ticket.hold(len(speech.chunks))
                    clock.lap("vad")
                else:
                    speech = SpeechMap(speech=plan.cached.asr.speech, chunks=[])
                diarized = None
                if "diarize" in runs:  # beside ASR: it needs only the audio
                    ticket.submit("Diarizer", duration)
                    diarized = tracked(
                        "Diarizer",
                        duration,
                        self.graph.diarizer.diarize,
                        audio_ref,
                        speech.speech,
                        plan.speakers,
                        references,
                    )
                results = None
                if "asr" in runs:

                    def detect(sample: list[tuple[float, float]], model: str, candidates: tuple[str, ...]):
                        transcriber = self.graph.transcriber
                        return start(
                            self._call(stats, transcriber.detect_language, audio_ref, sample, model, candidates)
                        )

                    plan = await plan.detect_language(speech.chunks, detect)
                    if plan.language_detected:
                        clock.lap("language")
                    results = await self._transcribe_chunks(plan, stats, ticket, audio_ref, speech, tracked, progress)
                    clock.lap("asr")
                    if keys:
                        entry = AsrEntry(duration, plan.language, plan.language_detected, speech.speech, results)
                        self.cache.store(keys.asr, encode_asr(entry))
                stats.stages = list(plan.stages())

                async def align(chunk_results: list[ChunkResult]):  # when the plan aligns
                    call = self._call(stats, self.graph.aligner.align, audio_ref, chunk_results, plan.language)
                    segments = await start(call)
                    clock.lap("align")
                    if keys and keys.align:
                        self.cache.store(keys.align, encode_segments(segments))
                    return segments

                segments = await plan.timed_segments(plan.asr_results(results), align)
                turns = plan.cached.turns
                if diarized is not None:
                    turns = await diarized
                    clock.lap("diarize_wait")
                    if keys and keys.diarize:
                        self.cache.store(keys.diarize, encode_turns(turns))
            except BaseException:
                for task in tasks:  # leave nothing running for a request that failed
                    task.cancel()
                raise
        transcript = plan.assemble(duration, segments, turns)
        clock.total()
        return plan, transcript

    async def _transcribe_chunks(
        self, plan: Plan, stats: ServiceStats, ticket: Ticket, audio_ref, speech, tracked, progress=None
    ):
        """The chunks fan out to the Transcriber, batched there with other requests' chunks."""
        ticket.submit("Transcriber", sum(e - s for s, e in speech.chunks))
        regions = Regions.of(speech.speech)  # each chunk carries the speech inside it
        calls = []
        for i, (s, e) in enumerate(speech.chunks):
            job = ChunkJob(stats.request_id, audio_ref, i, s, e, plan.decode, regions.within(s, e))
            calls.append(tracked("Transcriber", e - s, self.graph.transcriber.transcribe, job))
        if progress is None:
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
            if failed is not None:
                raise failed
        else:  # in audio order: a failure stops here, and the caller cancels the rest
            outcomes = []
            for call in calls:
                outcomes.append(await call)
                progress(plan, outcomes[-1].result)
        ticket.hold(0)
        stats.chunks = len(outcomes)
        stats.batch_sizes = [o.batch_size for o in outcomes]
        stats.batch_requests = [o.batch_requests for o in outcomes]
        return [o.result for o in outcomes]

    async def _call(self, stats: ServiceStats, method, *args):
        """A model call, resent if its replica dies (serve/retry.py)."""

        def count() -> None:
            stats.retries += 1

        return await retry.call(method, *args, policy=self.retry_policy, what=method.deployment_name, on_retry=count)

    async def _done_after(self, stats: ServiceStats, ticket: Ticket, stage: str, seconds: float, method, *args):
        """A model call whose audio seconds leave the stage's queue when it returns."""
        result = await self._call(stats, method, *args)
        ticket.done(stage, seconds)
        return result


class _Stopwatch:
    """Seconds per stage of one request, into `seconds`."""

    def __init__(self, seconds: dict[str, float]):
        self.seconds, self.start = seconds, time.perf_counter()
        self.last = self.start

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self.last, 4)
        self.last = now

    def total(self) -> None:
        self.seconds["total"] = round(time.perf_counter() - self.start, 4)
