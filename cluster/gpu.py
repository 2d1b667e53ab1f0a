"""What GPUs this process can see and how much memory each has.

NVML (pynvml, from the `nvidia-ml-py` package) reads the memory; where it has nothing (no
driver, no GPU, a sandbox without /dev/nvidia*), Ray's resources still say how many logical
GPUs there are, with memory unknown. Nothing here raises for a missing GPU: callers get an
empty list or None and fall back to their configured batch sizes.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuMemory:
    """One GPU as this process sees it. Memory fields are None when only Ray's count is known."""

    index: int  # among this process's visible devices (Placement.gpu_index)
    name: str
    total_bytes: int | None
    used_bytes: int | None  # by every process on the device, this one included
    free_bytes: int | None

    @property
    def known(self) -> bool:
        return self.total_bytes is not None


class MemoryReader(Protocol):
    def read(self, index: int) -> GpuMemory | None:
        """One visible device's memory now (None: cannot be read)."""

    def inventory(self) -> list[GpuMemory]:
        """Every visible device."""


def visible_devices() -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as a list (Ray sets it for a replica that reserved GPUs):
    NVML indices or GPU-/MIG- UUIDs. None: unset, every device is visible in NVML order."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


class NvmlReader:
    """Reads memory through NVML. Initialised on first use, once per process; any NVML error
    (no library, no driver, a device gone) reads as "nothing" rather than raising."""

    def __init__(self):
        self._lock = threading.Lock()
        self._nvml = None  # the pynvml module once initialised
        self._failed = False
        self._handles: dict[int, object] = {}

    def _init(self):
        with self._lock:
            if self._nvml is None and not self._failed:
                try:
                    import pynvml

                    pynvml.nvmlInit()
                    self._nvml = pynvml
                except Exception as exc:  # noqa: BLE001 - NVMLError, a missing module or library
                    self._failed = True
                    log.info("NVML unavailable (%s: %s): GPU memory unknown", type(exc).__name__, exc)
            return self._nvml

    def _handle(self, nvml, index: int):
        if index not in self._handles:
            visible = visible_devices()
            if visible is None:
                self._handles[index] = nvml.nvmlDeviceGetHandleByIndex(index)
            elif index >= len(visible):
                raise IndexError(f"visible device {index} of {len(visible)}")
            elif visible[index].isdigit():
                # CUDA numbers devices fastest-first unless CUDA_DEVICE_ORDER=PCI_BUS_ID; on the
                # one-model nodes this runs on they tie, and ties go in PCI order, as NVML's.
                self._handles[index] = nvml.nvmlDeviceGetHandleByIndex(int(visible[index]))
            else:
                self._handles[index] = nvml.nvmlDeviceGetHandleByUUID(visible[index])
        return self._handles[index]

    def read(self, index: int) -> GpuMemory | None:
        nvml = self._init()
        if nvml is None:
            return None
        try:
            handle = self._handle(nvml, index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            name = nvml.nvmlDeviceGetName(handle)
        except (nvml.NVMLError, IndexError) as exc:
            log.info("GPU %d: memory not readable (%s)", index, exc)
            return None
        return GpuMemory(index, str(name), int(memory.total), int(memory.used), int(memory.free))

    def inventory(self) -> list[GpuMemory]:
        nvml = self._init()
        if nvml is None:
            return []
        visible = visible_devices()
        try:
            count = len(visible) if visible is not None else nvml.nvmlDeviceGetCount()
        except nvml.NVMLError:
            return []
        found = (self.read(i) for i in range(count))
        return [gpu for gpu in found if gpu is not None]


def ray_inventory() -> list[GpuMemory]:
    """Logical GPUs from Ray, memory unknown: the ones this worker reserved, else this node's.
    Empty outside a Ray process."""
    import ray

    if not ray.is_initialized():
        return []
    count = len(ray.get_gpu_ids())
    if not count:
        node = ray.get_runtime_context().get_node_id()
        count = int(next((n["Resources"].get("GPU", 0) for n in ray.nodes() if n["NodeID"] == node), 0))
    return [GpuMemory(i, "logical GPU (Ray)", None, None, None) for i in range(count)]


def inventory(reader: MemoryReader | None = None) -> list[GpuMemory]:
    """NVML's view of the visible GPUs, else Ray's count."""
    return (reader or default_reader()).inventory() or ray_inventory()


_DEFAULT: NvmlReader | None = None


def default_reader() -> NvmlReader:
    """One NVML reader per process (NVML is initialised once and its handles reused)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = NvmlReader()
    return _DEFAULT
