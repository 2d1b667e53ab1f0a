"""The edge between Ray and the pipeline: what Ray gave this actor or replica, as a Placement.

Ray 2.60 no longer hides GPUs from workers that reserved none (CUDA_VISIBLE_DEVICES is left
as it is), so a CUDA probe there would find GPUs it may not use. The device comes from the
reservation instead: a GPU only when `ray.get_gpu_ids()` names one.

`WXS_LOGICAL_GPUS=1` (in the replicas' or actors' environment: a runtime_env's env_vars, or the
nodes' own) declares the cluster's GPUs logical only, as on a test cluster whose CPU machines
declare `num_gpus`: Ray still schedules and reserves them, and the stage runs on the CPU,
reporting the ids and share it was given. It is never inferred: without it a reservation that
names GPUs runs on CUDA, and fails loudly where there is none.
"""

from __future__ import annotations

import os

from pipeline.errors import InvalidOption
from pipeline.placement import Placement

LOGICAL_GPUS_ENV = "WXS_LOGICAL_GPUS"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def logical_gpus() -> bool:
    """Whether WXS_LOGICAL_GPUS declares this process's GPUs logical only. A value that is
    neither true nor false is an error rather than a guess."""
    value = os.environ.get(LOGICAL_GPUS_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidOption(f"{LOGICAL_GPUS_ENV} must be 1 or 0 (true/false), not {os.environ[LOGICAL_GPUS_ENV]!r}")


def from_ray(threads: int | None = None) -> Placement:
    """Call inside a Ray actor/replica/task. `threads` (declared in config) wins over the
    CPU reservation."""
    import ray

    resources = ray.get_runtime_context().get_assigned_resources()
    gpu_ids = ray.get_gpu_ids()
    placement = Placement.from_reservation(gpu_ids, float(resources.get("CPU", 0.0)), threads, logical_gpus())
    return placement.with_gpu_share(float(resources.get("GPU", 0.0)))
