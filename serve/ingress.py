"""HTTP ingress: OpenAI-compatible and native transcription endpoints over the deployment graph.

A request is read (size-limited), decoded once, scored by the VAD once, put in the object
store once, then its chunks fan out to the Transcriber (batched with other requests' chunks)
while the Diarizer works on the same audio in parallel; alignment follows ASR.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import ray
from ray import serve
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response

from cluster.placement import from_ray
from pipeline.audio import open_audio
from pipeline.cache_entries import AsrEntry, Reused, encode_asr, encode_segments, encode_turns, reuse
from pipeline.cache_keys import StageKeys, audio_digest, stage_keys
from pipeline.formats import CONTENT_TYPES
from pipeline.intervals import within as speech_within
from pipeline.plan import Plan, Planner, Request
from pipeline.schema import Transcript
from pipeline.vad import SpeechDetector, SpeechMap
from serve import retry
from serve.admission import Admission, AdmissionLimits, StageLoad, Ticket
from serve.cache_client import CacheClient
from serve.config import INGRESS_TUNABLE, ServiceArgs
from serve.deployments import AudioRef, ChunkJob
from serve.errors import RequestError, error_response, response_for
from serve.http import cache_allowed, native_request, openai_request, read_upload
from serve.retry import RetryPolicy

log = logging.getLogger("whisperx_serve")
OPENAI_MODEL_ALIASES = ("whisper-1",)
REPLICA_POLL_S = 5.0


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


@serve.deployment(name="Ingress", max_ongoing_requests=32, max_queued_requests=64)
class Ingress:
    async def __init__(self, args: ServiceArgs, transcriber, diarizer, aligner=None, vad=None):
        self.args = args
        self.config = args.pipeline_config()
        self.transcriber, self.diarizer, self.aligner = transcriber, diarizer, aligner
        self.vad_deployment = vad  # None: this replica runs the VAD itself
        # The ASR model's card is read once, from the replica that holds it (this node may not
        # have the model's files); every request is planned against it.
        self.card = await transcriber.card.remote()
        self.planner = Planner(self.config, self.card)
        # Cache keys name the exact ASR weights and the compute type the Transcriber runs.
        compute_type = (await transcriber.info.remote())["compute_type"]
        self.asr_identity = f"{self.card.weights}|{compute_type}"
        self.cache = CacheClient(args.cache.settings()) if args.cache.enabled else None
        if self.cache:
            await self.cache.connect()
        self.vad = self._vad_pool = None
        if vad is None:
            self.vad = SpeechDetector(self.config.vad, from_ray(args.threads("Ingress")))
            # Concurrent VAD calls share the segmentation model's forwards (SpeechDetector.batcher).
            self._vad_pool = ThreadPoolExecutor(max_workers=args.concurrent_calls("Ingress"), thread_name_prefix="vad")
        self.admission = Admission(
            _admission_limits(args), {name: StageLoad(speed) for name, speed in args.speed_priors().items()}
        )
        self.retry_policy = RetryPolicy(attempts=args.replica_retries + 1)
        self.deployed_args = args  # what user_config is laid over (reconfigure)
        self._replica_watch = asyncio.create_task(self._watch_replicas())
        self.routes = {
            ("POST", "/v1/audio/transcriptions"): self.openai_transcriptions,
            ("POST", "/v1/transcribe"): self.native_transcribe,
            ("GET", "/v1/models"): self.list_models,
            ("GET", "/healthz"): self.healthz,
        }

    def reconfigure(self, user_config: dict) -> None:
        """Request limits, admission bounds and retries (serve.config.INGRESS_TUNABLE) from
        user_config, changed without a restart; requests already admitted keep theirs."""
        args = self.deployed_args.with_ingress_config(user_config)
        self.args = args
        self.config = replace(self.config, limits=args.pipeline_config().limits)
        self.admission.limits = _admission_limits(args)
        self.retry_policy = RetryPolicy(attempts=args.replica_retries + 1)

    async def __call__(self, request: HttpRequest) -> Response:
        path = request.url.path.rstrip("/") or "/"
        handler = self.routes.get((request.method, path))
        if handler is None:
            if any(p == path for _, p in self.routes):
                return error_response(405, "method_not_allowed", f"{request.method} is not allowed on {path}")
            return error_response(404, "not_found", f"no route {path}; see README for the API")
        try:
            if path != "/healthz":
                self._authorize(request)
            return await handler(request)
        except Exception as exc:  # every error becomes a JSON response; the replica lives on
            return response_for(exc, self.args.retry_after_s)

    def _authorize(self, request: HttpRequest) -> None:
        key = self.args.api_key
        if key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
        if not hmac.compare_digest(token.encode(), key.encode()):
            raise RequestError(
                401,
                "invalid_api_key",
                "missing or wrong API key (Authorization: Bearer ...)",
                {"WWW-Authenticate": "Bearer"},
            )

    # --- endpoints ----------------------------------------------------------------------------

    async def healthz(self, request: HttpRequest) -> Response:
        try:  # ask the Transcriber (and the Vad, when deployed): ready means replicas with models answer
            info = await asyncio.wait_for(self.transcriber.info.remote(), timeout=5)
            if self.vad_deployment is not None:
                await asyncio.wait_for(self.vad_deployment.info.remote(), timeout=5)
        except Exception as exc:  # noqa: BLE001 - not ready, whatever the reason
            return error_response(503, "not_ready", f"models are not ready: {type(exc).__name__}")
        transcriber = {
            k: info[k]
            for k in (
                "pid",
                "max_batch_size",
                "batch_size_source",
                "batch_wait_timeout_s",
                "cpu_threads",
                "workers",
                "gpu_share",
                "gpu_ids",
                "node_id",
                "gpu_memory",
                "oom_splits",
            )
        }
        return JSONResponse(
            {
                "status": "ok",
                "asr": info["model"],
                "device": info["device"],
                **self.admission.status(),
                "limits": {name: getattr(self.args, name) for name in INGRESS_TUNABLE},
                "ingress_pid": os.getpid(),
                "vad": "deployment" if self.vad_deployment is not None else "ingress",
                "transcriber": transcriber,
                "cache": self.cache.status() if self.cache else None,
            }
        )

    async def list_models(self, request: HttpRequest) -> Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "whisperx-serve"}
            for name in (*OPENAI_MODEL_ALIASES, self.card.model_id)
        ]
        return JSONResponse({"object": "list", "data": data})

    async def openai_transcriptions(self, request: HttpRequest) -> Response:
        upload = await read_upload(request, self.args.max_upload_bytes)
        self._check_model(upload.get("model"))
        use_cache = cache_allowed(upload, request.headers)
        plan, transcript, stats = await self.transcribe(upload.audio, openai_request(upload), use_cache)
        return Response(
            plan.render(transcript),
            media_type=CONTENT_TYPES[plan.request.response_format],
            headers=_stats_headers(stats),
        )

    async def native_transcribe(self, request: HttpRequest) -> Response:
        upload = await read_upload(request, self.args.max_upload_bytes)
        self._check_model(upload.get("model"))
        use_cache = cache_allowed(upload, request.headers)
        plan, transcript, stats = await self.transcribe(upload.audio, native_request(upload), use_cache)
        if plan.request.response_format == "whisperx":
            body = {**transcript.to_dict(), "service": stats.__dict__}
            return Response(
                json.dumps(body, ensure_ascii=False), media_type="application/json", headers=_stats_headers(stats)
            )
        return Response(
            plan.render(transcript, source=upload.filename),  # rttm's file id: the upload's name
            media_type=CONTENT_TYPES[plan.request.response_format],
            headers=_stats_headers(stats),
        )

    def _check_model(self, requested: str | None) -> None:
        served = (*OPENAI_MODEL_ALIASES, self.card.model_id, self.config.asr.model)
        if requested and requested not in served:
            raise RequestError(
                400, "model_not_found", f"model {requested!r} is not served here; GET /v1/models lists what is"
            )

    # --- the plan, executed over the graph -------------------------------------------------------

    async def transcribe(
        self, data: bytes, request: Request, use_cache: bool = True
    ) -> tuple[Plan, Transcript, ServiceStats]:
        started = time.perf_counter()
        plan = self.planner.plan(request)  # bad options: typed errors, before any work
        stats = ServiceStats(request_id=uuid.uuid4().hex)
        plan, transcript, stats = await self._transcribe(data, plan, stats, use_cache)
        stats.seconds.setdefault("total", round(time.perf_counter() - started, 4))  # hits: the ingress's own time
        if self.cache:
            self.cache.count(stats.cache)
        if plan.detects_language:  # the language the transcript was made in, detected
            plan = plan.with_language(transcript.language)
        return plan, transcript, stats

    async def _transcribe(
        self, data: bytes, plan: Plan, stats: ServiceStats, use_cache: bool
    ) -> tuple[Plan, Transcript, ServiceStats]:
        keys = None
        if self.cache and use_cache:  # sha256 runs at ~1 GB/s: a large upload's off the event loop
            digest = audio_digest(data) if len(data) < 1 << 20 else await asyncio.to_thread(audio_digest, data)
            keys = stage_keys(plan, digest, self.asr_identity)
        if keys is None:
            stats.cache = "off"
            return plan, await self._compute(data, plan, stats, Reused(), None), stats
        entries = await self.cache.get(keys.lookups())
        if sum(len(e) for e in entries.values()) < 256 << 10:
            reused = reuse(plan, keys, entries)
        else:  # a long transcript's JSON: decoded off the event loop
            reused = await asyncio.to_thread(reuse, plan, keys, entries)
        stats.cache = reused.state(plan)
        if stats.cache == "hit":
            plan = reused.plan_for(plan)
            stats.stages = ["cache"]
            return plan, plan.assemble(reused.asr.duration, reused.segments(plan), reused.turns), stats
        # Identical requests in flight compute once; the others take the first one's transcript.
        transcript, shared = await self.cache.once(keys.result, lambda: self._compute(data, plan, stats, reused, keys))
        if shared:
            stats = ServiceStats(request_id=stats.request_id, cache="hit", stages=["in-flight"])
        return plan, transcript, stats

    async def _compute(
        self, data: bytes, plan: Plan, stats: ServiceStats, reused: Reused, keys: StageKeys | None
    ) -> Transcript:
        """Run the stages the cache did not answer (all of them without a cache) and store
        what they produce under their keys."""
        runs = reused.runs(plan)
        clock = _Stopwatch(stats.seconds)
        with self.admission.admit() as ticket:  # chunk cap: 503 before anything is read
            with open_audio(data, self.config.limits) as upload:  # size checks only
                await asyncio.to_thread(upload.probe)  # the header: too long -> 413, no decoding
                expected = upload.expected_seconds()
                ticket.expect(_work(runs, expected))  # expected wait past the bound -> 503
                audio = await asyncio.to_thread(upload.decode, ticket)  # every array reserved first
            ticket.settle(audio.samples.nbytes)
            clock.lap("decode")
            # The audio is held once: scored here before it moves to the object store, or read
            # from there by the Vad deployment.
            speech = None
            if reused.asr is None and self.vad_deployment is None:
                speech = await asyncio.get_running_loop().run_in_executor(self._vad_pool, self.vad.analyze, audio)
            duration, audio_ref = audio.duration, AudioRef(ray.put(audio.samples), audio.duration)
            del audio  # the object store holds the samples from here on
            if reused.asr is not None:
                speech = SpeechMap(speech=reused.asr.speech, chunks=[])
            else:
                if speech is None:
                    speech = await self._call(stats, self.vad_deployment.analyze, audio_ref)
                ticket.hold(len(speech.chunks))
                clock.lap("vad")
            tasks: list[asyncio.Task] = []
            try:
                # Diarization runs beside ASR: it needs only the audio.
                diarized = None
                if "diarize" in runs:
                    ticket.submit("Diarizer", duration)
                    diarized = asyncio.create_task(
                        self._done_after(
                            stats,
                            ticket,
                            "Diarizer",
                            duration,
                            self.diarizer.diarize,
                            audio_ref,
                            speech.speech,
                            plan.speakers,
                        )
                    )
                    tasks.append(diarized)
                if reused.asr is not None:
                    plan = reused.plan_for(plan)
                    results = reused.asr.chunks
                else:
                    if plan.detects_language:
                        sample = [speech.chunks[i] for i in plan.language_sample(speech.chunks)]
                        detection = asyncio.create_task(
                            self._call(stats, self.transcriber.detect_language, audio_ref, sample)
                        )
                        tasks.append(detection)
                        plan = plan.with_language(await detection)
                        clock.lap("language")
                    results = await self._transcribe_chunks(plan, stats, ticket, audio_ref, speech, tasks)
                    clock.lap("asr")
                    if keys:
                        entry = AsrEntry(duration, plan.language, plan.language_detected, speech.speech, results)
                        self.cache.store(keys.asr, encode_asr(entry))
                skipped = reused.skipped_stages()
                stats.stages = [s for s in plan.stages() if s not in skipped] + (["cache"] if skipped else [])
                if plan.aligns and results and reused.aligned is None:
                    alignment = asyncio.create_task(
                        self._call(stats, self.aligner.align, audio_ref, results, plan.language)
                    )
                    tasks.append(alignment)
                    segments = await alignment
                    clock.lap("align")
                    if keys and keys.align:
                        self.cache.store(keys.align, encode_segments(segments))
                else:
                    segments = reused.segments(plan, results)
                turns = reused.turns
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
        return transcript

    async def _transcribe_chunks(self, plan, stats, ticket, audio_ref, speech, tasks) -> list:
        """The chunks fan out to the Transcriber, batched there with other requests' chunks."""
        ticket.submit("Transcriber", sum(e - s for s, e in speech.chunks))
        calls = [
            asyncio.create_task(
                self._done_after(
                    stats,
                    ticket,
                    "Transcriber",
                    e - s,
                    self.transcriber.transcribe,
                    ChunkJob(stats.request_id, audio_ref, i, s, e, plan.decode, speech_within(speech.speech, s, e)),
                )
            )
            for i, (s, e) in enumerate(speech.chunks)
        ]
        tasks += calls
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failed is not None:
            raise failed
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

    async def _watch_replicas(self) -> None:
        """Keep each stage's replica count current, so the expected wait follows autoscaling."""
        app = serve.get_replica_context().app_name
        while True:
            try:
                status = await asyncio.to_thread(serve.status)
                deployments = status.applications[app].deployments
                for name, load in self.admission.stages.items():
                    running = deployments[name].replica_states.get("RUNNING", 0) if name in deployments else 0
                    load.set_replicas(running)
            except Exception as exc:  # noqa: BLE001 - keep the last counts; never fail requests
                log.debug("replica count unavailable: %s", exc)
            await asyncio.sleep(REPLICA_POLL_S)


def _admission_limits(args: ServiceArgs) -> AdmissionLimits:
    return AdmissionLimits(
        max_chunks_in_flight=args.max_chunks_in_flight,
        max_queue_wait_s=args.max_queue_wait_s,
        max_decoded_bytes=args.max_decoded_bytes_in_flight,
        retry_after_s=args.retry_after_s,
    )


def _work(runs: tuple[str, ...], audio_seconds: float) -> dict[str, float]:
    """Audio seconds a request is expected to put on each stage's queue (the Transcriber's
    share shrinks to the speech VAD finds); stages the cache answered put none."""
    work = {}
    if "asr" in runs:
        work["Transcriber"] = audio_seconds
    if "diarize" in runs:
        work["Diarizer"] = audio_seconds
    return work


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


def _stats_headers(stats: ServiceStats) -> dict[str, str]:
    return {
        "X-Request-Id": stats.request_id,
        "X-Cache": stats.cache,
        "X-WhisperX-Batch-Sizes": ",".join(str(b) for b in stats.batch_sizes),
        "X-WhisperX-Seconds": str(stats.seconds.get("total", 0.0)),
    }
