"""HTTP ingress: the OpenAI-compatible and native endpoints, thin: read the upload, turn its
fields into a Request (serve/http.py), let the executor run the plan over the deployment graph
(serve/executor.py), and render the result in the requested format."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from ray import serve
from ray.serve.metrics import Gauge
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from cluster.placement import from_ray
from pipeline.plan import Planner
from pipeline.vad import SpeechDetector
from serve import openapi, page
from serve.admission import Admission, AdmissionLimits, StageLoad
from serve.cache_client import CacheClient
from serve.config import INGRESS_MAX_ONGOING, INGRESS_TUNABLE, ServiceArgs
from serve.errors import RequestError, error_response, response_for
from serve.executor import Graph, GraphExecutor, ServiceStats, new_request_id
from serve.http import cache_allowed, native_request, openai_request, openai_translation_request, read_upload
from serve.realtime import LiveLimits, LiveVad, RealtimeSession
from serve.retry import RetryPolicy
from serve.streaming import NativeLines, OpenAiEvents, stream_transcription

log = logging.getLogger("whisperx_serve")
# (method, path) -> handler; /openapi.json describes each (serve/openapi.py). GET /docs/<asset>: Swagger UI's files.
ROUTES = {
    ("POST", "/v1/audio/transcriptions"): "openai_transcriptions",
    ("POST", "/v1/audio/translations"): "openai_translations",
    ("POST", "/v1/transcribe"): "native_transcribe",
    ("GET", "/v1/models"): "list_models",
    ("GET", "/"): "page",
    ("GET", "/healthz"): "healthz",
    ("GET", "/openapi.json"): "openapi",
    ("GET", "/docs"): "docs",
}
# Answered without the API key: health for probes, the API's description for anyone reading it.
PUBLIC_PATHS = ("/", "/healthz", "/openapi.json", "/docs")
REALTIME_PATH = "/v1/realtime"  # OpenAI's Realtime transcription sessions (WebSocket)
REPLICA_POLL_S = 5.0  # while a deployment changes: replicas starting, stopping, scaling
# While every deployment is healthy with its replicas running: serve.status() costs this replica
# and the controller about 0.1 CPU-second a call (it builds every deployment's details).
REPLICA_POLL_STEADY_S = 30.0
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@serve.deployment(name="Ingress", max_ongoing_requests=INGRESS_MAX_ONGOING, max_queued_requests=64)
@serve.ingress()
class Ingress:
    async def __init__(self, args: ServiceArgs, transcriber, diarizer, aligner=None, vad=None):
        self.deployed_args = args  # what user_config is laid over (reconfigure)
        config = args.pipeline_config()
        # The VAD loads while the Transcriber does: start-up waits for the slower, not the sum.
        vad_model = None
        if vad is None:
            placement = from_ray(args.threads("Ingress"))
            vad_model = asyncio.create_task(asyncio.to_thread(SpeechDetector, config.vad, placement))
        # The ASR models' cards are read once, from the replica that holds them (this node may
        # not have the models' files); every request is planned against them.
        self.cards = await transcriber.card.remote()
        cache = CacheClient(args.cache) if args.cache.enabled else None
        if cache:
            await cache.connect()
        graph = Graph(transcriber, diarizer, aligner, vad)
        if vad_model is not None:
            graph.vad = await vad_model
            # Concurrent VAD calls share the segmentation model's forwards (SpeechDetector.batcher).
            graph.vad_pool = ThreadPoolExecutor(max_workers=args.concurrent_calls("Ingress"), thread_name_prefix="vad")
        stages = {name: StageLoad(speed) for name, speed in args.speed_priors().items()}
        self.planner = Planner(config, self.cards)
        self.executor = GraphExecutor(graph, self.planner, Admission(AdmissionLimits(), stages), cache=cache)
        self.reconfigure({})  # the args' own limits, bounds and retries
        self.replica_states: dict[str, dict[str, int]] = {}  # deployment -> replica state -> count
        self._replica_watch = asyncio.create_task(self._watch_replicas())
        self.routes = {route: getattr(self, handler) for route, handler in ROUTES.items()}
        self._live_vad: LiveVad | None = None  # the live sessions' turn detection, made on the first
        self.live_sessions = 0  # open on this replica
        self._sessions_gauge = Gauge("whisperx_live_sessions", description="live sessions open on an ingress replica")

    def reconfigure(self, user_config: dict) -> None:
        """Request limits, admission bounds and retries (serve.config.INGRESS_TUNABLE) from
        user_config, changed without a restart; requests already admitted keep theirs."""
        self.args = args = self.deployed_args.with_ingress_config(user_config)
        self.executor.limits = args.pipeline_config().limits
        self.executor.retry_policy = RetryPolicy(attempts=args.replica_retries + 1)
        self.executor.admission.limits = AdmissionLimits(
            args.max_chunks_in_flight, args.max_queue_wait_s, args.max_decoded_bytes_in_flight, args.retry_after_s
        )

    def __serve_build_asgi_app__(self) -> Starlette:
        """Serve's ASGI ingress: HTTP to `dispatch` (the routes above), WebSockets to the
        Realtime sessions; any other WebSocket path is refused (HTTP 403 before the upgrade)."""
        return Starlette(
            routes=[
                WebSocketRoute(REALTIME_PATH, self.realtime),
                WebSocketRoute("/{path:path}", _refuse_websocket),
                Route("/{path:path}", self.dispatch, methods=METHODS),
            ]
        )

    async def dispatch(self, request: HttpRequest) -> Response:
        path = request.url.path.rstrip("/") or "/"
        handler = self.routes.get((request.method, path))
        if handler is None and request.method == "GET" and path.startswith("/docs/"):
            handler = self.docs_asset
        if handler is None and request.method == "GET" and path.startswith(page.ASSET_PREFIX):
            handler = self.page_asset
        if handler is None:
            if any(p == path for _, p in self.routes):
                return error_response(405, "method_not_allowed", f"{request.method} is not allowed on {path}")
            return error_response(404, "not_found", f"no route {path}; see README for the API")
        try:
            if path not in PUBLIC_PATHS and not path.startswith(("/docs/", page.ASSET_PREFIX)):
                self._authorize(request)
            return await handler(request)
        except Exception as exc:  # every error becomes a JSON response; the replica lives on
            return response_for(exc, self.args.retry_after_s)

    def _authorize(self, request: HttpRequest | WebSocket) -> None:
        key = self.args.api_key
        if key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
        if not token:  # browsers' WebSockets carry no headers: OpenAI's subprotocol carries the key
            protocols = request.headers.get("sec-websocket-protocol", "").split(",")
            prefix = "openai-insecure-api-key."
            token = next((p.strip()[len(prefix) :] for p in protocols if p.strip().startswith(prefix)), "")
        if not hmac.compare_digest(token.encode(), key.encode()):
            raise RequestError(
                401,
                "invalid_api_key",
                "missing or wrong API key (Authorization: Bearer ...)",
                {"WWW-Authenticate": "Bearer"},
            )

    # --- endpoints ----------------------------------------------------------------------------

    async def realtime(self, ws: WebSocket) -> None:
        """`/v1/realtime?intent=transcription`: a live transcription session (serve/realtime.py)."""
        intent = ws.query_params.get("intent", "transcription")
        try:
            self._authorize(ws)
        except RequestError as exc:
            await ws.close(code=1008, reason=str(exc)[:120])
            return
        if intent != "transcription":
            await ws.close(code=1008, reason=f"intent={intent}: only transcription sessions are served")
            return
        if self.live_sessions >= self.args.live_max_sessions:  # refused in the protocol, not left waiting
            await ws.accept()
            error = {
                "type": "invalid_request_error",
                "code": "session_limit_reached",
                "message": f"this replica serves at most {self.args.live_max_sessions} live sessions "
                "(live_max_sessions): try again later",
                "param": None,
                "event_id": None,
            }
            await ws.send_text(json.dumps({"event_id": f"event_{new_request_id()}", "type": "error", "error": error}))
            await ws.close(code=1013, reason="session_limit_reached")  # 1013: try again later
            return

        async def transcribe(wav: bytes, asked) -> tuple[str, str]:
            _, transcript, _ = await self.executor.transcribe(wav, asked, use_cache=False)
            return transcript.text, transcript.language

        def describe(exc: BaseException) -> dict:
            return json.loads(response_for(exc, self.args.retry_after_s).body)["error"]

        args = self.args
        limits = LiveLimits(
            args.live_max_session_s, args.live_idle_timeout_s, args.live_max_buffer_s, args.live_max_message_bytes
        )
        self.live_sessions += 1
        self._sessions_gauge.set(self.live_sessions)
        try:
            await RealtimeSession(ws, transcribe, describe, await self._server_vad(), limits).run()
        finally:
            self.live_sessions -= 1
            self._sessions_gauge.set(self.live_sessions)

    async def _server_vad(self) -> LiveVad:
        """The sessions' turn detection: the VAD model where the files' VAD runs (this replica
        or the Vad deployment), its windows in the same shared forwards."""
        if self._live_vad is None:
            graph = self.executor.graph
            if graph.vad_deployment is not None:
                deployment = graph.vad_deployment
                grid = await deployment.frame_grid.remote()

                async def score(samples):
                    return await deployment.window_scores.remote(samples)
            else:
                grid, loop = graph.vad.frame_grid(), asyncio.get_running_loop()

                async def score(samples):
                    return await loop.run_in_executor(graph.vad_pool, graph.vad.window_scores, samples)

            self._live_vad = LiveVad(grid, score)
        return self._live_vad

    async def healthz(self, request: HttpRequest) -> Response:
        graph = self.executor.graph
        try:  # ask the Transcriber (and the Vad, when deployed): ready means replicas with models answer
            info = await asyncio.wait_for(graph.transcriber.info.remote(), timeout=5)
            if graph.vad_deployment is not None:
                await asyncio.wait_for(graph.vad_deployment.info.remote(), timeout=5)
        except Exception as exc:  # noqa: BLE001 - not ready, whatever the reason
            return error_response(503, "not_ready", f"models are not ready: {type(exc).__name__}")
        cache = self.executor.cache
        loading = {n for n, states in self.replica_states.items() if set(states) - {"RUNNING"}}
        loading |= await self._models_loading()
        return JSONResponse(
            {
                "status": "ok",
                "asr": info["model"],
                "device": info["device"],
                **self.executor.admission.status(),
                "limits": {name: getattr(self.args, name) for name in INGRESS_TUNABLE},
                "ingress_pid": os.getpid(),
                # replicas by state, polled every REPLICA_POLL_S (REPLICA_POLL_STEADY_S while all are
                # healthy and running); "loading": deployments with a
                # replica not yet running, or whose model loads after the Transcriber's
                "replicas": self.replica_states,
                "loading": sorted(loading),
                "vad": "deployment" if graph.vad_deployment is not None else "ingress",
                # live sessions open here (the Transcriber's "live_chunks_waiting": their chunks queued)
                "live": {"sessions": self.live_sessions, "max_sessions": self.args.live_max_sessions},
                # the Transcriber's own report (batching, threads, workers, placement, GPU memory)
                "transcriber": {k: v for k, v in info.items() if k not in ("model", "device")},
                "cache": cache.status() if cache else None,
            }
        )

    async def _models_loading(self) -> set[str]:
        """The Diarizer and Aligner load after the Transcriber on a CPU machine (the cpu profile):
        ready without them, /healthz still names them until theirs has loaded."""
        graph = self.executor.graph
        stages = {"Diarizer": graph.diarizer, "Aligner": graph.aligner}
        asked = {n: handle.info.remote() for n, handle in stages.items() if handle is not None}
        loading = set()
        for name, response in asked.items():
            try:
                if (await asyncio.wait_for(response, timeout=2))["loading"]:
                    loading.add(name)
            except Exception:  # noqa: BLE001 - busy or starting: the replica states tell the latter
                pass
        return loading

    async def openapi(self, request: HttpRequest) -> Response:
        return JSONResponse(openapi.document())

    async def docs(self, request: HttpRequest) -> Response:
        return Response(openapi.DOCS_PAGE, media_type="text/html; charset=utf-8")

    async def docs_asset(self, request: HttpRequest) -> Response:
        asset = openapi.docs_asset(request.url.path.rsplit("/", 1)[-1])
        if asset is None:
            return error_response(404, "not_found", f"no route {request.url.path}; see /docs")
        body, media_type = asset
        return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})

    async def page(self, request: HttpRequest) -> Response:
        body, media_type = page.index()
        return Response(body, media_type=media_type, headers={"Content-Security-Policy": page.CSP})

    async def page_asset(self, request: HttpRequest) -> Response:
        found = page.asset(request.url.path[len(page.ASSET_PREFIX) :])
        if found is None:
            return error_response(404, "not_found", f"no route {request.url.path}; the page is at /")
        body, media_type = found
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})

    async def list_models(self, request: HttpRequest) -> Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "whisperx-serve"}
            for name in self.planner.routes.served()
        ]
        return JSONResponse({"object": "list", "data": data})

    async def openai_transcriptions(self, request: HttpRequest) -> Response:
        upload = await read_upload(request, self.args.max_upload_bytes)
        use_cache = cache_allowed(upload, request.headers)
        asked = openai_request(upload)
        if asked.stream:
            return await self._stream(upload, asked, use_cache, OpenAiEvents())
        plan, transcript, stats = await self.executor.transcribe(upload.audio, asked, use_cache)
        headers = _stats_headers(stats, transcript)
        return Response(plan.render(transcript), media_type=plan.format.content_type, headers=headers)

    async def _stream(self, upload, asked, use_cache: bool, framing) -> Response:
        request_id = new_request_id()
        return await stream_transcription(
            lambda progress: self.executor.transcribe(upload.audio, asked, use_cache, progress, request_id),
            lambda exc: json.loads(response_for(exc, self.args.retry_after_s).body),
            lambda done: _stats_headers(done[2], done[1]),
            request_id,
            framing,
        )

    async def openai_translations(self, request: HttpRequest) -> Response:
        upload = await read_upload(request, self.args.max_upload_bytes)
        use_cache = cache_allowed(upload, request.headers)
        plan, transcript, stats = await self.executor.transcribe(
            upload.audio, openai_translation_request(upload), use_cache
        )
        headers = _stats_headers(stats, transcript)
        return Response(plan.render(transcript), media_type=plan.format.content_type, headers=headers)

    async def native_transcribe(self, request: HttpRequest) -> Response:
        upload = await read_upload(request, self.args.max_upload_bytes)
        use_cache = cache_allowed(upload, request.headers)
        asked = native_request(upload)
        if asked.stream:
            return await self._stream(upload, asked, use_cache, NativeLines())
        plan, transcript, stats = await self.executor.transcribe(upload.audio, asked, use_cache)
        # rttm's file id: the upload's name; WhisperX's JSON carries the service's account
        body = plan.render(transcript, source=upload.filename, service=asdict(stats))
        return Response(body, media_type=plan.format.content_type, headers=_stats_headers(stats, transcript))

    async def _watch_replicas(self) -> None:
        """Keep each stage's replica count current, so the expected wait follows autoscaling,
        and each deployment's replica states for /healthz (which are still starting)."""
        app = serve.get_replica_context().app_name
        while True:
            try:
                status = await asyncio.to_thread(serve.status)
                deployments = status.applications[app].deployments
                self.replica_states = {
                    n: {getattr(k, "value", k): v for k, v in d.replica_states.items()} for n, d in deployments.items()
                }
                for name, load in self.executor.admission.stages.items():
                    running = deployments[name].replica_states.get("RUNNING", 0) if name in deployments else 0
                    load.set_replicas(running)
                steady = all(_steady(d) for d in deployments.values())
            except Exception as exc:  # noqa: BLE001 - keep the last counts; never fail requests
                log.debug("replica count unavailable: %s", exc)
                steady = False
            await asyncio.sleep(REPLICA_POLL_STEADY_S if steady else REPLICA_POLL_S)


def _steady(deployment) -> bool:
    """Healthy, every replica running: nothing to follow until the next steady poll."""
    status = getattr(deployment.status, "value", deployment.status)
    states = {getattr(state, "value", state) for state in deployment.replica_states}
    return status == "HEALTHY" and states <= {"RUNNING"}


async def _refuse_websocket(ws: WebSocket) -> None:
    """A WebSocket on any other path: refused before the upgrade, naming the one there is."""
    await ws.close(code=1008, reason=f"no WebSocket at {ws.url.path}; live sessions: {REALTIME_PATH}")


def _stats_headers(stats: ServiceStats, transcript) -> dict[str, str]:
    return {
        "X-Request-Id": stats.request_id,
        # which ASR model ran (the routing rule's choice) and the language it decoded
        "X-WhisperX-Model": transcript.models.get("asr", ""),
        "X-WhisperX-Language": transcript.language,
        "X-Cache": stats.cache,
        "X-WhisperX-Batch-Sizes": ",".join(str(b) for b in stats.batch_sizes),
        "X-WhisperX-Seconds": str(stats.seconds.get("total", 0.0)),
        # the same seconds per stage, as browsers' and proxies' tools read them (milliseconds)
        "Server-Timing": server_timing(stats.seconds),
    }


def server_timing(seconds: dict[str, float]) -> str:
    """`Server-Timing` of a request's stage seconds: `vad;dur=812.5, asr;dur=1020.0, ...`.
    Stages overlap (the VAD feeds the ASR as it goes), so they need not add up to `total`."""
    return ", ".join(f"{name};dur={value * 1000:.1f}" for name, value in seconds.items())
