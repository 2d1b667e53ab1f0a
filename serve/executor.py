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
from pipeline.plan import Plan, Planner, Request
from pipeline.schema import Audio, ChunkResult, Transcript
from pipeline.vad import FinalChunk, SpeechDetector, SpeechMap, final_chunks
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
                # A live utterance's wait is the live work ahead of it (it goes first): the session
                # cap bounds that, so only bulk work is refused for the queue's length.
                ticket.expect({deployment: seconds for deployment in tracked}, bound_wait=not plan.request.live)
                audio = await asyncio.to_thread(upload.decode, ticket)  # every array reserved first
            ticket.settle(audio.samples.nbytes)
            clock.lap("decode")
            # The audio is held once, in the object store; the VAD here reads it from there.
            duration, audio_ref = audio.duration, AudioRef(ray.put(audio.samples), audio.duration)
            del audio
            tasks: list[asyncio.Task] = []

            def start(coroutine) -> asyncio.Task:
                tasks.append(asyncio.create_task(coroutine))
                return tasks[-1]

            def tracked(stage: str, seconds: float, method, *args) -> asyncio.Task:
                return start(self._done_after(stats, ticket, stage, seconds, method, *args))

            try:
                feed = _ChunkFeed(asyncio.get_running_loop()) if "asr" in runs else None
                scanned = start(self._vad(stats, audio_ref, plan, feed)) if feed else None
                diarized = None
                if "diarize" in runs:  # beside ASR: it needs the audio and the speech regions only

                    async def diarize():
                        regions = (await scanned).speech if scanned else plan.cached.asr.speech
                        ticket.submit("Diarizer", duration)
                        diarizer = self.graph.diarizer.diarize
                        return await self._done_after(
                            stats, ticket, "Diarizer", duration, diarizer, audio_ref, regions, plan.speakers, references
                        )

                    diarized = start(diarize())
                results = None
                if feed is not None:

                    def detect(sample: list[FinalChunk], model: str, candidates: tuple[str, ...]):
                        spans = [(c.start, c.end) for c in sample]
                        transcriber = self.graph.transcriber
                        return start(
                            self._call(stats, transcriber.detect_language, audio_ref, spans, model, candidates)
                        )

                    if plan.detects_language:  # on the first chunks: a stream need not wait for the whole VAD
                        plan = await plan.detect_language(feed.first, detect)
                        clock.lap("language")
                    results = await self._transcribe_chunks(
                        plan, stats, ticket, audio_ref, feed, tracked, progress, since=clock.start
                    )
                    speech = await scanned
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

    async def _vad(self, stats: ServiceStats, audio_ref: AudioRef, plan: Plan, feed: _ChunkFeed) -> SpeechMap:
        """The speech map, its chunks announced to `feed` as they are final: here, scored
        progressively in a worker thread, or all at once by the Vad deployment; or the one the
        request brought (a live turn), announced at once."""
        if (given := plan.given_speech(audio_ref.duration)) is not None:
            feed.add(final_chunks(given))
            feed.end()
            return given
        started, regions = time.perf_counter(), plan.vad
        try:
            if self.graph.vad_deployment is not None:
                speech = await self._call(stats, self.graph.vad_deployment.analyze, audio_ref, regions)
                feed.add(final_chunks(speech))
            else:
                loop = asyncio.get_running_loop()
                speech = await loop.run_in_executor(self.graph.vad_pool, self._scan, audio_ref, regions, feed)
        except BaseException as error:
            feed.end(error)  # and the thread stops at its next announcement
            raise
        feed.end()
        stats.seconds["vad"] = round(time.perf_counter() - started, 4)
        return speech

    def _scan(self, audio_ref: AudioRef, regions, feed: _ChunkFeed) -> SpeechMap:
        samples = ray.get(audio_ref.ref)  # a read-only view of the object store's copy
        return self.graph.vad.analyze_progressively(Audio(samples), regions, feed.announce)

    async def _transcribe_chunks(
        self,
        plan: Plan,
        stats: ServiceStats,
        ticket: Ticket,
        audio_ref,
        feed: _ChunkFeed,
        tracked,
        progress=None,
        since: float = 0.0,
    ):
        """Each chunk goes to the Transcriber as soon as the VAD announces it, batched there with
        other requests' chunks; the results are taken (and `progress` called) in audio order."""
        calls: asyncio.Queue = asyncio.Queue()
        sent = 0

        async def dispatch():
            nonlocal sent
            try:
                async for chunks in feed:
                    if not sent:  # the request's first chunk, from its arrival (Server-Timing)
                        stats.seconds["first_chunk"] = round(time.perf_counter() - since, 4)
                    sent += len(chunks)
                    ticket.hold(sent)
                    ticket.submit("Transcriber", sum(c.end - c.start for c in chunks), more=True)
                    for c in chunks:
                        job = ChunkJob(
                            stats.request_id,
                            audio_ref,
                            c.index,
                            c.start,
                            c.end,
                            plan.decode,
                            c.speech,
                            plan.request.live,
                        )
                        calls.put_nowait(
                            tracked("Transcriber", c.end - c.start, self.graph.transcriber.transcribe, job)
                        )
                ticket.hold(sent)  # no speech: the placeholder goes too
                ticket.submit("Transcriber", 0.0)  # the VAD is over: what it did not find leaves the queue
            finally:
                calls.put_nowait(None)

        dispatcher = asyncio.create_task(dispatch())
        try:
            outcomes = []  # a failure stops here, and the caller cancels the rest
            while (call := await calls.get()) is not None:
                outcomes.append(await call)
                if progress is not None:
                    progress(plan, outcomes[-1].result)
            await dispatcher  # the VAD's failure, if it failed
        finally:
            dispatcher.cancel()
        ticket.hold(0)
        stats.chunks = len(outcomes)
        stats.batch_sizes = [o.batch_size for o in outcomes]
        stats.seconds["chunk_decode"] = round(sum(o.decode_seconds for o in outcomes), 4)
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


class _Abandoned(Exception):
    """Raised in the VAD's thread when its request is gone."""


class _ChunkFeed:
    """The VAD's final chunks, from its thread to the event loop, in order; an async iterator of
    the lists announced (for one consumer at a time)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.chunks: list[FinalChunk] = []
        self.ended = False
        self.error: BaseException | None = None
        self._changed = asyncio.Event()

    def announce(self, chunks: list[FinalChunk]) -> None:
        """From the VAD's thread; raises there once the request has ended."""
        if self.ended:
            raise _Abandoned
        self.loop.call_soon_threadsafe(self.add, chunks)

    def add(self, chunks: list[FinalChunk]) -> None:
        self.chunks.extend(chunks)
        self._changed.set()

    def end(self, error: BaseException | None = None) -> None:
        self.ended, self.error = True, error
        self._changed.set()

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    async def first(self, count: int) -> list[FinalChunk]:
        """The first `count` chunks, or all of them when there are fewer."""
        while len(self.chunks) < count and not self.ended:
            await self._wait()
        self._raise()
        return self.chunks[:count]

    async def __aiter__(self):
        taken = 0
        while True:
            if len(self.chunks) > taken:
                yield self.chunks[taken:]
                taken = len(self.chunks)
            elif self.ended:
                self._raise()
                return
            else:
                await self._wait()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


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
