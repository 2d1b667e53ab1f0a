"""The service's arguments: config.yaml's `args`, validated by Ray Serve before it calls
`build_app(args: ServiceArgs)` (a bad field fails `serve run` with its name). Placements are
declared, never probed: a profile (`cpu`, the default, or `gpu`) gives each deployment its Ray
options, models and batching, and `deployments:` overrides any of it."""

from __future__ import annotations

import copy
import os
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.audio import AudioLimits
from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError
from pipeline.settings import OFF, PipelineSettings
from pipeline.torch_runtime import TORCH_DTYPES, TORCH_STAGES
from pipeline.vad import VadOptions
from serve.cache_client import CacheSettings

DeploymentName = Literal["Ingress", "Transcriber", "Aligner", "Diarizer", "Vad"]
VadPlacement = Literal["ingress", "deployment"]
# CTranslate2's compute types: a precision, or "auto"/"default" for CTranslate2's own choice
Precision = Literal["int8", "int8_float16", "int8_float32", "int8_bfloat16", "int16", "float16", "bfloat16", "float32"]
ComputeType = Literal[Precision, "auto", "default"]
SpeedStage = Literal["Transcriber", "Diarizer"]
TorchStage = Literal[TORCH_STAGES]  # pipeline/torch_runtime.py's names, as pydantic checks them
TorchDtype = Literal[TORCH_DTYPES]
# The deployment each planned stage runs in (the VAD's: the Vad deployment, or the Ingress when
# vad_placement is "ingress"; ServiceArgs.stage_deployment).
STAGE_DEPLOYMENT = {"vad": "Vad", "asr": "Transcriber", "align": "Aligner", "diarize": "Diarizer"}
DEPLOYMENT_NAMES: tuple[str, ...] = get_args(DeploymentName)
# DeploymentArgs fields the replica reads itself, not Ray Serve options.
REPLICA_ONLY = {"threads", "concurrent_calls"}
# ServiceArgs fields the Ingress also takes from its `user_config`: request limits, admission
# bounds and retries change with `serve deploy` without restarting a replica (Ingress.reconfigure).
INGRESS_TUNABLE = (
    "max_upload_bytes",
    "max_audio_seconds",
    "max_chunks_in_flight",
    "max_queue_wait_s",
    "max_decoded_bytes_in_flight",
    "retry_after_s",
    "replica_retries",
    "live_max_sessions",
    "live_max_session_s",
    "live_idle_timeout_s",
    "live_max_buffer_s",
    "live_max_message_bytes",
)
# Requests one Ingress replica works on at once (its deployment's default; a live session is one).
INGRESS_MAX_ONGOING = 32
# Deployments whose concurrent calls share torch forwards (the VAD, in its own deployment or
# in the ingress; the diarizer). The Aligner's variable-length inputs are not batched, and its per-language model
# LRU counts on one call at a time, so it runs one unless configured.
BATCHED_TORCH_DEPLOYMENTS = ("Ingress", "Vad", "Diarizer")
# Calls a GPU replica of a batched torch stage runs at once: enough callers to fill its batches while
# each still holds only one request's features (an offline diarization call holds its mel
# spectrogram: about 1 MB per audio minute).
CONCURRENT_CALLS_ON_GPU = 4
# Without a GPU two: their forwards alternate, so a long request holds at most half the model.
CONCURRENT_CALLS_ON_CPU = 2


def _autoscale(low: int, high: int, target: int, up_s: float, down_s: float) -> dict:
    return {
        "min_replicas": low,
        "initial_replicas": low,
        "max_replicas": high,
        "target_ongoing_requests": target,
        "upscale_delay_s": up_s,
        "downscale_delay_s": down_s,
    }


# How often Serve's controller checks a model replica (Serve's default is 10 s): a replica that
# died is replaced this much sooner, and the requests whose calls it held wait that much less.
HEALTH_CHECKED = {"health_check_period_s": 2.0}

# Each profile: each deployment's Serve options (its models: pipeline/settings.py's MODEL_PROFILES).
PROFILES: dict[str, dict[str, Any]] = {
    # One CPU machine (a laptop; the default). Logical CPUs add up to 2, so the four replicas
    # fit a 2-core machine; a replica's threads follow its reservation (1.25 -> 2 threads:
    # two 1-thread CTranslate2 workers, measured 50.8x vs 35.1x real time for one 2-thread one).
    "cpu": {
        # Where the VAD runs: in the ingress measured as fast as its own replica on 2 cores and
        # saves a process (benchmarks/BENCHMARKS.md, section 12).
        "vad_placement": "ingress",
        # Models that load once the Transcriber has: three loads at once on two cores slowed each
        # (healthy 34 s after the deploy); the Transcriber and the ingress's VAD are what /healthz
        # and every request need, these only the requests that use them (which wait for them).
        "load_after_transcriber": ("Diarizer", "Aligner"),
        # Audio seconds per second one replica returns, until the ingress has measured it
        # (tiny.en on 1.25 CPUs under load; the offline segmentation diarizer, 22x real time on 2
        # threads, on 0.25 CPU). Low on purpose: a cold service sheds a little early rather than
        # admit a queue it cannot serve in time.
        "speed_prior": {"Transcriber": 15.0, "Diarizer": 10.0},
        "deployments": {
            "Ingress": {"ray_actor_options": {"num_cpus": 0.25}, "num_replicas": 1},
            "Transcriber": {
                **HEALTH_CHECKED,
                "ray_actor_options": {"num_cpus": 1.25},
                "num_replicas": 1,
                "user_config": {"max_batch_size": 1, "batch_wait_timeout_s": 0.05},  # config.yaml's
            },
            "Aligner": {**HEALTH_CHECKED, "ray_actor_options": {"num_cpus": 0.25}, "num_replicas": 1},
            "Diarizer": {**HEALTH_CHECKED, "ray_actor_options": {"num_cpus": 0.25}, "num_replicas": 1},
            # Used only with vad_placement "deployment". The two logical CPUs are spoken for: it
            # reserves none and runs the one VAD thread the ingress would otherwise run.
            "Vad": {**HEALTH_CHECKED, "ray_actor_options": {"num_cpus": 0}, "num_replicas": 1},
        },
    },
    # GPU nodes: large-v3-turbo float16 on whole GPUs, wav2vec2 and pyannote on quarter GPUs.
    "gpu": {
        # The VAD in its own autoscaled deployment on a GPU share: one ingress thread scoring every
        # request's audio would cap the service long before the GPUs are busy.
        "vad_placement": "deployment",
        "load_after_transcriber": (),  # each model on its own GPU share: all load at once
        "speed_prior": {"Transcriber": 200.0, "Diarizer": 100.0},
        # Autoscaling (README, "Run on a cluster", says why each number):
        # - target_ongoing_requests is what one replica works on at once, so a replica is added
        #   only when its queue holds more than that: the Transcriber's 32 chunk calls are its two
        #   concurrent batches of max_batch_size 16, so batches still fill as replicas grow; the
        #   VAD's and Diarizer's 4 are their concurrent calls (CONCURRENT_CALLS_ON_GPU).
        # - upscale_delay_s: a model replica needs ~20-60 s to start and load its weights; a burst
        #   shorter than the delay is served by the queue rather than by a replica that is ready
        #   only after it. The ingress, light to start, follows load faster.
        # - downscale_delay_s: reloading a GPU model costs more than keeping an idle replica for
        #   a few minutes; the Transcriber, slowest to load, is kept longest.
        # - the Ingress's max_replicas follows the Transcriber's (ServiceArgs.deployment_options).
        "deployments": {
            "Ingress": {
                "ray_actor_options": {"num_cpus": 1},
                "autoscaling_config": _autoscale(1, 8, 16, up_s=5, down_s=120),
            },
            "Vad": {
                **HEALTH_CHECKED,
                "ray_actor_options": {"num_gpus": 0.25, "num_cpus": 1},
                "autoscaling_config": _autoscale(1, 4, 4, up_s=10, down_s=300),
            },
            "Transcriber": {
                **HEALTH_CHECKED,
                "ray_actor_options": {"num_gpus": 1, "num_cpus": 2},
                "autoscaling_config": _autoscale(1, 8, 32, up_s=15, down_s=600),
                "user_config": {"max_batch_size": 16, "batch_wait_timeout_s": 0.05},
            },
            "Aligner": {
                **HEALTH_CHECKED,
                "ray_actor_options": {"num_gpus": 0.25, "num_cpus": 1},
                "autoscaling_config": _autoscale(1, 8, 4, up_s=15, down_s=300),
            },
            "Diarizer": {
                **HEALTH_CHECKED,
                "ray_actor_options": {"num_gpus": 0.25, "num_cpus": 1},
                "autoscaling_config": _autoscale(1, 8, 4, up_s=15, down_s=300),
            },
        },
    },
}
# Batching before the first user_config arrives (the cpu profile's values).
DEFAULT_BATCHING = dict(PROFILES["cpu"]["deployments"]["Transcriber"]["user_config"])


class DeploymentArgs(BaseModel):
    """Ray Serve options for one deployment, merged over the profile's."""

    model_config = ConfigDict(extra="forbid")

    ray_actor_options: dict[str, Any] | None = None  # num_cpus, num_gpus, runtime_env, resources...
    threads: int | None = Field(None, ge=1)  # CPU threads of its compute (default: from num_cpus)
    # Model calls one replica runs at once: the Ingress's VAD, the Diarizer, the Aligner. The
    # VAD's and Diarizer's torch forwards share batches (pipeline/batching.py), which fills a
    # GPU from many short requests and takes concurrent calls' forwards in turn. Default:
    # CONCURRENT_CALLS_ON_CPU without a GPU (so a short request's VAD or diarization runs beside
    # a long one's, not after it), CONCURRENT_CALLS_ON_GPU with one; the Aligner 1 (several
    # calls overlap CPU and GPU work but may hold more than align.max_loaded_models models).
    # The Transcriber batches with @serve.batch instead and refuses it.
    concurrent_calls: int | None = Field(None, ge=1, le=64)
    num_replicas: int | None = Field(None, ge=0)
    autoscaling_config: dict[str, Any] | None = None
    max_ongoing_requests: int | None = Field(None, ge=1)
    max_queued_requests: int | None = None
    user_config: dict[str, Any] | None = None
    health_check_period_s: float | None = Field(None, gt=0)
    health_check_timeout_s: float | None = Field(None, gt=0)


class ServiceArgs(BaseModel):
    """config.yaml's `args`."""

    model_config = ConfigDict(extra="forbid")

    profile: Literal["cpu", "gpu"] = "cpu"
    # models (None: the profile's; "none" turns alignment or pyannote off)
    asr_model: str | None = None
    # English audio's model beside asr_model (None: the profile's, tiny.en beside base on cpu,
    # when asr_model is the profile's too; "none": asr_model decodes everything)
    english_asr_model: str | None = None
    compute_type: ComputeType | None = None
    asr_workers: int | None = Field(None, ge=1)  # CTranslate2 workers (default: 2 on CPU, 1 on GPU)
    align_model: str | None = None
    diarize_model: str | None = None
    # The offline diarizer when no diarize_model: "segmentation" (overlap-aware) or "windows" (cheaper)
    diarize_method: Literal["segmentation", "windows"] = "segmentation"
    # known speakers one request may name (OpenAI's limit: 4)
    max_known_speakers: int = Field(4, ge=1, le=32)
    # torch stages (VAD segmentation, wav2vec2, speaker encoder): precision per stage
    # (float16/bfloat16 need the stage's deployment on a GPU) and torch.compile for all of them
    torch_dtype: dict[TorchStage, TorchDtype] = Field(default_factory=dict)
    torch_compile: bool = False
    vad_step_seconds: float = Field(VadOptions().step_seconds, gt=0, le=10)
    # "deployment": the Vad deployment scores audio, batched across requests and autoscaled on its
    # own; "ingress": the ingress replica does (no extra process). None: the profile's.
    vad_placement: VadPlacement | None = None
    # request limits
    max_upload_bytes: int = Field(AudioLimits().max_bytes, gt=0)
    max_audio_seconds: float = Field(AudioLimits().max_seconds, gt=0)
    # admission, per ingress replica (serve/admission.py); beyond any bound, 503 + Retry-After
    max_chunks_in_flight: int = Field(256, ge=1)
    max_queue_wait_s: float = Field(120.0, gt=0)  # expected wait before a request's work starts
    max_decoded_bytes_in_flight: int = Field(2 << 30, gt=0)  # float32 samples of admitted requests
    speed_prior: dict[SpeedStage, float] = Field(default_factory=dict)  # over the profile's; >0
    retry_after_s: int = Field(5, ge=1)
    replica_retries: int = Field(3, ge=0)  # resends of a call whose model replica died
    # live sessions (/v1/realtime), per ingress replica: past one, an `error` event naming it
    live_max_sessions: int = Field(8, ge=0)  # more are refused (error event, close code 1013)
    live_max_session_s: float = Field(1800.0, gt=0)  # then the session ends (its utterances answered)
    live_idle_timeout_s: float = Field(120.0, gt=0)  # no event from the client this long: it ends
    live_max_buffer_s: float = Field(600.0, gt=0)  # audio appended and not committed
    live_max_message_bytes: int = Field(15 << 20, gt=0)  # one client event (OpenAI's bound)
    # optional API key; the value itself is read from this environment variable
    api_key_env: str = "WXS_API_KEY"
    cache: CacheSettings = Field(default_factory=CacheSettings)  # serve/cache_client.py
    deployments: dict[DeploymentName, DeploymentArgs] = Field(default_factory=dict)

    @field_validator("deployments")
    @classmethod
    def _transcriber_batches_its_own_way(cls, value: dict[str, DeploymentArgs]) -> dict[str, DeploymentArgs]:
        transcriber = value.get("Transcriber")
        if transcriber and transcriber.concurrent_calls:
            raise ValueError(
                "Transcriber.concurrent_calls: the Transcriber batches chunks with @serve.batch; "
                "set user_config.max_batch_size instead"
            )
        return value

    @field_validator("asr_model")
    @classmethod
    def _asr_cannot_be_off(cls, value: str | None) -> str | None:
        if value == OFF:
            raise ValueError("asr_model cannot be 'none': the service needs an ASR model")
        return value

    @field_validator("speed_prior")
    @classmethod
    def _positive_speeds(cls, value: dict[str, float]) -> dict[str, float]:
        for name, speed in value.items():
            if not speed > 0:
                raise ValueError(f"speed_prior.{name} must be > 0 (audio seconds per second per replica)")
        return value

    @model_validator(mode="after")
    def _live_sessions_fit_the_ingress(self) -> ServiceArgs:
        """A session holds one of the Ingress's ongoing requests for its whole length: past
        max_ongoing_requests a new one would wait in Serve's queue unanswered, not be refused."""
        ongoing = (self.deployments.get("Ingress") or DeploymentArgs()).max_ongoing_requests or INGRESS_MAX_ONGOING
        if self.live_max_sessions >= ongoing:
            raise ValueError(
                f"live_max_sessions ({self.live_max_sessions}) must stay below the Ingress's "
                f"max_ongoing_requests ({ongoing}): HTTP requests need the rest"
            )
        return self

    @model_validator(mode="after")
    def _reduced_precision_on_gpu_only(self) -> ServiceArgs:
        devices, where = {}, {}
        for stage in TORCH_STAGES:
            deployment = self.stage_deployment(stage)
            gpus = (self.deployment_options(deployment).get("ray_actor_options") or {}).get("num_gpus", 0)
            devices[stage] = "cuda" if gpus else "cpu"
            where[stage] = f"the {deployment} deployment reserves none (ray_actor_options.num_gpus)"
        try:
            PipelineConfig().with_torch(dict(self.torch_dtype)).check_torch_devices(devices, where)
        except PipelineError as exc:
            raise ValueError(f"torch_dtype: {exc}") from exc
        return self

    @property
    def vad_deployed(self) -> bool:
        """True when the VAD runs in its own deployment, False when in the ingress."""
        return (self.vad_placement or PROFILES[self.profile]["vad_placement"]) == "deployment"

    def loads_after_transcriber(self, name: str) -> bool:
        return name in PROFILES[self.profile]["load_after_transcriber"]

    def stage_deployment(self, stage: str) -> str:
        """The deployment a stage ("vad", "asr", "align", "diarize") runs in."""
        if stage == "vad" and not self.vad_deployed:
            return "Ingress"
        return STAGE_DEPLOYMENT[stage]

    def with_ingress_config(self, user_config: dict[str, Any] | None) -> ServiceArgs:
        """These args with the Ingress's `user_config` over them: only INGRESS_TUNABLE fields,
        validated as the args are (a misspelt or out-of-range one fails the deploy, naming it)."""
        user_config = user_config or {}
        fixed = sorted(set(user_config) - set(INGRESS_TUNABLE))
        if fixed:
            raise ValueError(
                f"Ingress user_config: {', '.join(fixed)} cannot change without a restart "
                f"(set it in args); reconfigurable: {', '.join(INGRESS_TUNABLE)}"
            )
        return ServiceArgs.model_validate({**self.model_dump(), **user_config})

    def speed_priors(self) -> dict[str, float]:
        return {**PROFILES[self.profile]["speed_prior"], **self.speed_prior}

    @property
    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None

    def pipeline_config(self) -> PipelineConfig:
        """The pipeline configuration every replica builds its stages from."""
        return PipelineSettings.from_mapping(self.model_dump()).pipeline_config()

    def deployment_options(self, name: str) -> dict:
        """Serve options for one deployment: the profile's, then `deployments:` over them."""
        options = copy.deepcopy(PROFILES[self.profile]["deployments"][name])
        override = self.deployments.get(name)
        given = override.model_dump(exclude_none=True, exclude=REPLICA_ONLY) if override else {}
        for key, value in given.items():
            if isinstance(value, dict) and isinstance(options.get(key), dict):
                options[key] = {**options[key], **value}
            else:
                options[key] = value
        if "autoscaling_config" in given:
            options.pop("num_replicas", None)
        if "num_replicas" in given:
            options.pop("autoscaling_config", None)
        scaling, given_scaling = options.get("autoscaling_config"), given.get("autoscaling_config") or {}
        if name == "Ingress":
            self._follow_transcribers(options, given_scaling)
        if scaling and "initial_replicas" in scaling and "initial_replicas" not in given_scaling:
            # the profile's start count stays within a changed (or followed) min and max
            low, high = scaling.get("min_replicas", 1), scaling.get("max_replicas", 1)
            scaling["initial_replicas"] = min(max(scaling["initial_replicas"], low, 1), high)
        return options

    def _follow_transcribers(self, options: dict, given: dict) -> None:
        """An autoscaled Ingress may grow as far as the Transcribers do (unless its own
        max_replicas is given): one ingress replica's admission and fan-out keep roughly one
        ASR replica's batches full, so a fixed cap would idle GPUs added beyond it."""
        scaling = options.get("autoscaling_config")
        transcriber = self.deployment_options("Transcriber")
        most = (transcriber.get("autoscaling_config") or {}).get("max_replicas", transcriber.get("num_replicas"))
        if scaling is None or most is None or "max_replicas" in given:
            return
        scaling["max_replicas"] = max(scaling.get("min_replicas", 1), most)

    def threads(self, name: str) -> int | None:
        override = self.deployments.get(name)
        return override.threads if override else None

    def concurrent_calls(self, name: str) -> int:
        override = self.deployments.get(name)
        if override and override.concurrent_calls:
            return override.concurrent_calls
        gpus = (self.deployment_options(name).get("ray_actor_options") or {}).get("num_gpus", 0)
        if name not in BATCHED_TORCH_DEPLOYMENTS:
            return 1
        return CONCURRENT_CALLS_ON_GPU if gpus else CONCURRENT_CALLS_ON_CPU
