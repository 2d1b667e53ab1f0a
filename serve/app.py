"""The application builder that config.yaml's `import_path: serve.app:build_app` points at.

It composes Ingress -> (Transcriber, Diarizer, Aligner) with `.bind()`, and picks defaults
from the cluster it sees: GPUs -> GPU placements and the production models (large-v3-turbo,
wav2vec2, pyannote); none -> CPU placements and the bundled offline models. Anything set in
`args` (or in config.yaml's per-deployment settings) wins over these defaults.
"""

from __future__ import annotations

import copy
import os

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

from ray import serve  # noqa: E402
from ray.serve.config import BackpressureConfig  # noqa: E402

from serve.config import ServiceConfig, resolved  # noqa: E402
from serve.deployments import AlignerDeployment, DiarizerDeployment, TranscriberDeployment  # noqa: E402
from serve.ingress import Ingress  # noqa: E402

PRODUCTION = {"asr": "large-v3-turbo", "align": "default", "diarize": "pyannote/speaker-diarization-community-1"}


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0)) if ray.is_initialized() else 0.0


def default_plan(gpus: float) -> dict[str, dict]:
    """Per-deployment Ray Serve options for a cluster with `gpus` GPUs in all."""
    autoscale = lambda lo, hi, target: {"min_replicas": lo, "max_replicas": hi,  # noqa: E731
                                        "target_ongoing_requests": target}
    if gpus >= 1:
        whole = int(gpus)
        return {
            "Ingress": {"ray_actor_options": {"num_cpus": 1}, "autoscaling_config": autoscale(1, max(2, whole), 16)},
            "Transcriber": {"ray_actor_options": {"num_gpus": 1, "num_cpus": 2},
                            "autoscaling_config": autoscale(1, whole, 32),
                            "user_config": {"max_batch_size": 16, "batch_wait_timeout_s": 0.05}},
            "Aligner": {"ray_actor_options": {"num_gpus": 0.25, "num_cpus": 1},
                        "autoscaling_config": autoscale(1, max(1, whole), 4)},
            "Diarizer": {"ray_actor_options": {"num_gpus": 0.25, "num_cpus": 1},
                         "autoscaling_config": autoscale(1, max(1, whole), 4)},
        }
    # One CPU machine (a laptop): fractional CPUs so the four replicas fit two cores' worth
    # of logical CPUs; the Transcriber's CTranslate2 threads come from cpu_threads.
    return {
        "Ingress": {"ray_actor_options": {"num_cpus": 0.25}, "num_replicas": 1},
        "Transcriber": {"ray_actor_options": {"num_cpus": 1}, "num_replicas": 1,
                        "user_config": {"max_batch_size": 4, "batch_wait_timeout_s": 0.01}},
        "Aligner": {"ray_actor_options": {"num_cpus": 0.25}, "num_replicas": 1},
        "Diarizer": {"ray_actor_options": {"num_cpus": 0.25}, "num_replicas": 1},
    }


def merged_options(plan: dict, overrides: dict, name: str, config: ServiceConfig) -> dict:
    options = copy.deepcopy(plan.get(name, {}))
    for key, value in (overrides.get(name) or {}).items():
        if isinstance(value, dict) and isinstance(options.get(key), dict):
            options[key] = {**options[key], **value}
        else:
            options[key] = value
    if "autoscaling_config" in (overrides.get(name) or {}):
        options.pop("num_replicas", None)
    if "num_replicas" in (overrides.get(name) or {}):
        options.pop("autoscaling_config", None)
    if name == "Ingress":
        options.setdefault("backpressure_config", BackpressureConfig(status_code=503,
                                                                     retry_after_s=config.retry_after_s))
    return options


def build_app(args: dict | None = None) -> serve.Application:
    config = ServiceConfig.from_args(args)
    gpus = cluster_gpus()
    plan = default_plan(gpus)
    on_gpu = gpus >= 1
    asr_model = resolved(config.asr_model, PRODUCTION["asr"] if on_gpu else "bundled")
    align_model = resolved(config.align_model, PRODUCTION["align"] if on_gpu else None)
    diarize_model = resolved(config.diarize_model, PRODUCTION["diarize"] if on_gpu else None)
    opts = lambda name: merged_options(plan, config.deployments, name, config)  # noqa: E731

    transcriber = TranscriberDeployment.options(**opts("Transcriber")).bind(config, asr_model, config.compute_type)
    diarizer = DiarizerDeployment.options(**opts("Diarizer")).bind(config, diarize_model)
    aligner = AlignerDeployment.options(**opts("Aligner")).bind(config, align_model) if align_model else None
    return Ingress.options(**opts("Ingress")).bind(config, transcriber, diarizer, aligner)
