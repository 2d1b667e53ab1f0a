"""The edge between Ray and the pipeline: what Ray gave this actor or replica, as a Placement.

Ray 2.60 no longer hides GPUs from workers that reserved none (CUDA_VISIBLE_DEVICES is left
as it is), so a CUDA probe there would find GPUs it may not use. The device comes from the
reservation instead: a GPU only when `ray.get_gpu_ids()` names one.
"""

from __future__ import annotations

from pipeline.placement import Placement


def from_ray(threads: int | None = None) -> Placement:
    """Call inside a Ray actor/replica/task. `threads` (declared in config) wins over the
    CPU reservation."""
    import ray

    resources = ray.get_runtime_context().get_assigned_resources()
    gpu_ids = ray.get_gpu_ids()
    placement = Placement.from_reservation(gpu_ids, float(resources.get("CPU", 0.0)), threads)
    return placement.with_gpu_share(float(resources.get("GPU", 0.0)))
