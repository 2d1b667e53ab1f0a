"""Where a stage runs: a small value given to every stage at construction, never probed by it.

The executor that owns the process builds it: a Ray replica or Data actor from what Ray gave
it (`cluster.placement.from_ray`: a GPU only if it reserved one), the library from its
caller, and only the CLI resolves `--device auto` by looking for a GPU.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

from pipeline.errors import InvalidOption

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Placement:
    device: str = "cpu"  # "cpu" or "cuda": never "auto"
    cpu_threads: int = 1  # threads this stage may use for its own compute
    gpu_share: float = 0.0  # fraction of a GPU reserved (0 when none is)
    gpu_index: int = 0  # index among the GPUs visible to this process
    # The GPU ids the scheduler reserved (Ray's `ray.get_gpu_ids()`, as strings): empty without
    # a reservation. With logical GPUs (`from_reservation(..., logical_gpus=True)`) they are kept
    # while the device is the CPU, so a replica still reports where it was scheduled.
    gpu_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise InvalidOption(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.cpu_threads < 1:
            raise InvalidOption("cpu_threads must be at least 1")

    @property
    def torch_device(self) -> str:
        return f"cuda:{self.gpu_index}" if self.device == "cuda" else "cpu"

    @classmethod
    def local_cpu(cls, threads: int | None = None) -> Placement:
        """This process's cores, on the CPU (the library's default: it never picks a GPU itself)."""
        return cls(device="cpu", cpu_threads=threads or available_cores())

    @property
    def logical_gpus(self) -> bool:
        """GPUs were reserved but are logical only: the stage computes on the CPU."""
        return self.device == "cpu" and bool(self.gpu_ids)

    @classmethod
    def from_reservation(
        cls, gpu_ids: list, reserved_cpus: float, threads: int | None = None, logical_gpus: bool = False
    ) -> Placement:
        """What a scheduler gave: GPU ids (empty: none reserved, so CPU even where GPUs are
        visible) and logical CPUs. A fractional CPU reservation still gets one thread; 1.25
        gets two. `threads` (declared in config) wins over the reservation.

        `logical_gpus`: the scheduler's GPUs are bookkeeping only (a test cluster declaring
        GPUs on CPU machines): the stage runs on the CPU, keeping the ids and share it was
        given. It is an explicit opt-in, never inferred: a real reservation without it runs
        on CUDA, and fails loudly where CUDA is missing."""
        cpu_threads = threads or max(1, math.ceil(reserved_cpus - 1e-9))
        ids = tuple(str(i) for i in gpu_ids)
        if not ids:
            return cls(device="cpu", cpu_threads=cpu_threads)
        if logical_gpus:
            return cls(device="cpu", cpu_threads=cpu_threads, gpu_share=1.0, gpu_ids=ids)
        return cls(device="cuda", cpu_threads=cpu_threads, gpu_share=1.0, gpu_index=0, gpu_ids=ids)

    def with_gpu_share(self, share: float) -> Placement:
        """The fraction of a GPU reserved (kept with logical GPUs too; 0 with none reserved)."""
        return replace(self, gpu_share=share if self.gpu_ids or self.device == "cuda" else 0.0)


def resolve_auto(device: str = "auto", threads: int | None = None) -> Placement:
    """The CLI's `--device`: `auto` looks for a CUDA device CTranslate2 can use."""
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if device.startswith("cuda:"):
        index = device.split(":", 1)[1]
        if not index.isdigit():
            raise InvalidOption(f"device must be cpu, cuda, cuda:N or auto, not {device!r}")
        return Placement("cuda", threads or available_cores(), 1.0, int(index))
    return Placement(device, threads or available_cores(), 1.0 if device == "cuda" else 0.0)


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
