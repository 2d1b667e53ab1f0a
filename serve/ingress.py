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
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pipeline.asr import check_decode_options
from pipeline.audio import AudioLimits, load_audio
from pipeline.formats import CONTENT_TYPES, render
from pipeline.runner import JobOptions, assemble
from pipeline.schema import Transcript
from pipeline.vad import SpeechDetector, VadOptions
from serve.config import ServiceConfig
from serve.deployments import AudioRef, ChunkJob
from serve.errors import Overloaded, RequestError, error_response, response_for
from serve.http import ParsedRequest, native_request, openai_request, read_upload

log = logging.getLogger("whisperx_serve")
OPENAI_MODEL_ALIASES = ("whisper-1",)


@dataclass
class ServiceStats:
    """How the service handled one request (returned by the native endpoint)."""

    request_id: str
    chunks: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    batch_requests: list[int] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


@serve.deployment(name="Ingress", max_ongoing_requests=32, max_queued_requests=64)
class Ingress:
    def __init__(self, config: ServiceConfig, transcriber, diarizer, aligner=None):
        self.config = config
        self.transcriber, self.diarizer, self.aligner = transcriber, diarizer, aligner
        self.limits = AudioLimits(max_bytes=config.max_upload_bytes, max_seconds=config.max_audio_seconds)
        self.vad = SpeechDetector(VadOptions(step_seconds=config.vad_step_seconds))
        self._vad_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vad")
        self._chunks_in_flight = 0
        self._model_info: dict | None = None
        self.routes = {
            ("POST", "/v1/audio/transcriptions"): self.openai_transcriptions,
            ("POST", "/v1/transcribe"): self.native_transcribe,
            ("GET", "/v1/models"): self.list_models,
            ("GET", "/healthz"): self.healthz,
        }

    async def __call__(self, request: Request) -> Response:
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
            return response_for(exc, self.config.retry_after_s)

    def _authorize(self, request: Request) -> None:
        key = self.config.api_key
        if key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
        if not hmac.compare_digest(token.encode(), key.encode()):
            raise RequestError(401, "invalid_api_key", "missing or wrong API key (Authorization: Bearer ...)",
                               {"WWW-Authenticate": "Bearer"})

    # --- endpoints ----------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        try:  # ask the Transcriber itself: ready means a replica with the model loaded answers
            info = await asyncio.wait_for(self.transcriber.info.remote(), timeout=5)
        except Exception as exc:  # noqa: BLE001 - not ready, whatever the reason
            return error_response(503, "not_ready", f"models are not ready: {type(exc).__name__}")
        return JSONResponse({"status": "ok", "asr": info["model"], "device": info["device"],
                             "chunks_in_flight": self._chunks_in_flight,
                             "transcriber": {k: info[k] for k in ("pid", "max_batch_size", "batch_wait_timeout_s")}})

    async def list_models(self, request: Request) -> Response:
        info = await self.model_info()
        created = 0
        data = [{"id": name, "object": "model", "created": created, "owned_by": "whisperx-serve"}
                for name in (*OPENAI_MODEL_ALIASES, info["model"])]
        return JSONResponse({"object": "list", "data": data})

    async def openai_transcriptions(self, request: Request) -> Response:
        upload = await read_upload(request, self.config.max_upload_bytes)
        await self._check_model(upload.get("model"))
        parsed = openai_request(upload)
        transcript, stats = await self.transcribe(upload.audio, parsed.job)
        body = render(transcript, parsed.response_format, word_granularity=parsed.word_timestamps)
        return Response(body, media_type=CONTENT_TYPES[parsed.response_format], headers=_stats_headers(stats))

    async def native_transcribe(self, request: Request) -> Response:
        upload = await read_upload(request, self.config.max_upload_bytes)
        await self._check_model(upload.get("model"))
        parsed: ParsedRequest = native_request(upload)
        transcript, stats = await self.transcribe(upload.audio, parsed.job)
        if parsed.response_format == "whisperx":
            body = {**transcript.to_dict(), "service": stats.__dict__}
            return Response(json.dumps(body, ensure_ascii=False), media_type="application/json",
                            headers=_stats_headers(stats))
        return Response(render(transcript, parsed.response_format), media_type=CONTENT_TYPES[parsed.response_format],
                        headers=_stats_headers(stats))

    # --- the pipeline over the graph -------------------------------------------------------------

    async def model_info(self) -> dict:
        if self._model_info is None:
            self._model_info = await self.transcriber.info.remote()
        return self._model_info

    async def _check_model(self, requested: str | None) -> None:
        if not requested:
            return
        info = await self.model_info()
        if requested not in (*OPENAI_MODEL_ALIASES, info["model"], "bundled", "tiny.en"):
            raise RequestError(400, "model_not_found",
                               f"model {requested!r} is not served here; GET /v1/models lists what is")

    async def transcribe(self, data: bytes, job: JobOptions) -> tuple[Transcript, ServiceStats]:
        stats = ServiceStats(request_id=uuid.uuid4().hex)
        clock = _Stopwatch(stats.seconds)
        info = await self.model_info()
        check_decode_options(job.decode, info["model"], info["multilingual"], info["languages"])
        job.speakers.bounds()

        loop = asyncio.get_running_loop()
        audio = await asyncio.to_thread(load_audio, data, self.limits)
        clock.lap("decode")
        # An idle service gives the VAD several threads (it is on the request's critical path);
        # a busy one gives it one, leaving the cores to the ASR workers.
        threads = self.config.vad_threads if self._chunks_in_flight == 0 else 1
        speech = await loop.run_in_executor(self._vad_pool, _analyze, self.vad, audio, threads)
        clock.lap("vad")
        audio_ref = AudioRef(ray.put(audio.samples), audio.duration)

        diarized = (self.diarizer.diarize.remote(audio_ref, speech.speech, job.speakers)
                    if job.diarize else None)          # runs beside ASR: it needs only the audio
        decode = job.decode
        if decode.language is None:
            language = "en" if not info["multilingual"] else await self.transcriber.detect_language.remote(
                audio_ref, speech.chunks[:5])
            decode = replace(decode, language=language)

        if self._chunks_in_flight + len(speech.chunks) > self.config.max_chunks_in_flight and self._chunks_in_flight:
            raise Overloaded()
        self._chunks_in_flight += len(speech.chunks)
        try:
            outcomes = await asyncio.gather(*[
                self.transcriber.transcribe.remote(
                    ChunkJob(stats.request_id, audio_ref, i, start, end, decode))
                for i, (start, end) in enumerate(speech.chunks)
            ])
        finally:
            self._chunks_in_flight -= len(speech.chunks)
        stats.chunks = len(outcomes)
        stats.batch_sizes = [o.batch_size for o in outcomes]
        stats.batch_requests = [o.batch_requests for o in outcomes]
        clock.lap("asr")

        results = [o.result for o in outcomes]
        language = decode.language or "en"
        models = {"asr": info["model"], "vad": "whisperx/pyannote-segmentation", "align": "whisper-cross-attention"}
        if self.aligner is not None and job.align and results:
            segments = await self.aligner.align.remote(audio_ref, results, language)
            models["align"] = await self.aligner.model_id.remote(language)
            clock.lap("align")
        else:
            segments = [seg for r in sorted(results, key=lambda r: r.index) for seg in r.segments]
        turns = None
        if diarized is not None:
            turns = await diarized
            models["diarize"] = await self.diarizer.model_id.remote()
            clock.lap("diarize_wait")
        transcript = assemble(audio.duration, segments, language, turns, models)
        clock.total()
        return transcript, stats


def _analyze(vad: SpeechDetector, audio, threads: int):
    # OpenMP's thread count is per calling thread (and Ray sets OMP_NUM_THREADS=1 in
    # fractional-CPU replicas), so it is set here, in the VAD's own thread.
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(max(1, threads))
    return vad.analyze(audio)


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
    return {"X-Request-Id": stats.request_id,
            "X-WhisperX-Batch-Sizes": ",".join(str(b) for b in stats.batch_sizes),
            "X-WhisperX-Seconds": str(stats.seconds.get("total", 0.0))}
