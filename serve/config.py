"""The service's configuration: one typed object, filled from config.yaml's `args`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from pipeline.errors import InvalidOption

AUTO = None     # "pick from the cluster": the bundled models on CPU, production models on GPU
OFF = "none"


@dataclass(frozen=True)
class ServiceConfig:
    # models (None = auto: chosen by the app builder from the cluster it sees)
    asr_model: str | None = AUTO
    compute_type: str | None = None
    cpu_threads: int | None = None         # CTranslate2 threads per worker (None: auto)
    asr_workers: int | None = None         # CTranslate2 workers (None: 2 on a multi-core CPU, 1 on GPU)
    align_model: str | None = AUTO         # "none" = Whisper cross-attention word times only
    diarize_model: str | None = AUTO       # "none" = the offline resemblyzer diarizer
    vad_step_seconds: float = 2.5          # 1.0 = WhisperX's VAD exactly; 2.5 measured ~3x cheaper
    vad_threads: int = 2                   # torch threads for the VAD in each ingress replica
    # request limits
    max_upload_bytes: int = 100 * 1024 * 1024
    max_audio_seconds: float = 3 * 3600.0
    max_chunks_in_flight: int = 256        # per ingress replica; beyond it requests get 503
    retry_after_s: int = 5
    # optional API key; the value itself is read from this environment variable
    api_key_env: str = "WXS_API_KEY"
    # per-deployment Ray Serve options (ray_actor_options, autoscaling_config, num_replicas,
    # max_ongoing_requests, max_queued_requests, user_config), merged over the builder's defaults
    deployments: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: dict | None) -> ServiceConfig:
        args = dict(args or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(args) - known)
        if unknown:
            raise InvalidOption(f"unknown service settings: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        config = cls(**args)
        for name in config.deployments:
            if name not in DEPLOYMENT_NAMES:
                raise InvalidOption(f"unknown deployment {name!r} in deployments; known: {', '.join(DEPLOYMENT_NAMES)}")
        return config

    @property
    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None


DEPLOYMENT_NAMES = ("Ingress", "Transcriber", "Aligner", "Diarizer")


def resolved(value: str | None, default: str | None) -> str | None:
    """AUTO -> the builder's default; "none" -> None (off); anything else as given."""
    if value is AUTO:
        return default
    return None if value == OFF else value
