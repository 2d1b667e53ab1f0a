"""GPU memory inventory and the memory-aware ASR batch size: injected memory readers and fake
decoders, so no GPU and no Ray. The real NVML path runs too: empty without a driver, real
figures where a GPU is lent."""

from __future__ import annotations

import threading
import types

import pytest

from cluster import gpu
from cluster.asr_memory import PeakUsed, measure
from cluster.gpu import GpuMemory, NvmlReader
from pipeline.batch_size import (
    BatchLimit,
    MemoryFigures,
    decode_in_halves,
    is_out_of_memory,
    memory_cap,
    power_of_two_floor,
)
from pipeline.placement import Placement

GiB = 1 << 30
MiB = 1 << 20


def figures(**kw) -> MemoryFigures:
    base = dict(
        total_bytes=80 * GiB, share=1.0, resident_bytes=4 * GiB, free_bytes=80 * GiB, per_chunk_bytes=GiB, headroom=0.0
    )
    return MemoryFigures(**{**base, **kw})


# --- memory_cap ---------------------------------------------------------------------------------


def test_power_of_two_floor():
    assert [power_of_two_floor(n) for n in (0, 1, 2, 3, 4, 5, 7, 8, 63, 64, 65)] == [1, 1, 2, 2, 4, 4, 4, 8, 32, 64, 64]


def test_cap_follows_the_share():
    # whole GPU: 80 - 4 = 76 chunks -> 64; a quarter: 20 - 4 = 16 chunks -> 16
    assert memory_cap(figures(share=1.0)) == 64
    assert memory_cap(figures(share=0.25)) == 16


def test_headroom_is_taken_off_the_share():
    # quarter of 80 GiB = 20; 15 % of it = 3; 20 - 4 - 3 = 13 chunks -> 8
    assert memory_cap(figures(share=0.25, headroom=0.15)) == 8
    assert memory_cap(figures(share=0.25, headroom=0.15)) < memory_cap(figures(share=0.25, headroom=0.0))


def test_neighbours_free_memory_bounds_the_share():
    # a whole-GPU share, but neighbours left only 12 GiB free: 12 - 4 = 8 chunks
    assert memory_cap(figures(free_bytes=12 * GiB)) == 8


def test_always_a_power_of_two():
    for per_chunk in (300 * MiB, 700 * MiB, GiB, 3 * GiB):
        cap = memory_cap(figures(per_chunk_bytes=per_chunk, share=0.5, headroom=0.15))
        assert cap & (cap - 1) == 0


def test_nothing_fits_still_tries_one():
    assert memory_cap(figures(share=0.05)) == 1  # 4 GiB share, 4 GiB resident
    assert memory_cap(figures(resident_bytes=90 * GiB)) == 1
    with pytest.raises(ValueError):
        memory_cap(figures(per_chunk_bytes=0))


# --- BatchLimit ---------------------------------------------------------------------------------


def test_cpu_uses_the_configured_size():
    limit = BatchLimit(16)
    assert (limit.size, limit.source) == (16, "config")


def test_configured_size_is_the_ceiling():
    assert (BatchLimit(16, memory=64).size, BatchLimit(16, memory=64).source) == (16, "config")
    assert (BatchLimit(16, memory=8).size, BatchLimit(16, memory=8).source) == (8, "gpu-memory")
    assert BatchLimit(8, memory=8).source == "config"  # a tie: the configured value holds anyway


def test_reconfigure_keeps_the_memory_cap():
    from dataclasses import replace

    limit = BatchLimit(16, memory=8)
    assert replace(limit, configured=32).size == 8
    assert replace(limit, configured=4).size == 4


def test_oom_lowers_and_never_raises():
    limit = BatchLimit(16, memory=16).after_oom(6)  # 6 decoded: 4 from now on (power of two)
    assert (limit.size, limit.source) == (4, "oom")
    assert limit.after_oom(8).size == 4
    assert limit.after_oom(2).size == 2
    assert BatchLimit(32, memory=8).after_oom(16).source == "gpu-memory"  # memory still binds


# --- decode_in_halves ---------------------------------------------------------------------------


def fake_decoder(k: int, message: str = "CUDA failed with error out of memory"):
    """Raises CTranslate2's out-of-memory for batches over k; records every decoded item."""
    calls: list[list[int]] = []
    decoded: list[int] = []

    def decode(items: list[int]) -> list[str]:
        calls.append(list(items))
        if len(items) > k:
            raise RuntimeError(message)
        decoded.extend(items)
        return [f"r{i}" for i in items]

    return decode, calls, decoded


@pytest.mark.parametrize(("n", "k"), [(16, 16), (16, 5), (13, 3), (16, 1), (7, 2), (1, 1)])
def test_halves_keep_order_and_decode_each_item_once(n, k):
    decode, calls, decoded = fake_decoder(k)
    split = decode_in_halves(decode, list(range(n)))
    assert split.results == [f"r{i}" for i in range(n)]
    assert sorted(decoded) == list(range(n))  # every item decoded exactly once
    if n <= k:
        assert (split.splits, split.worked, len(calls)) == (0, None, 1)
    else:
        assert split.splits >= 1 and split.worked is not None and split.worked <= k
        assert len(calls) == split.splits + len([c for c in calls if len(c) <= k])  # every failure was split


def test_the_remainder_is_not_retried_at_a_size_that_failed():
    decode, calls, _ = fake_decoder(4)
    split = decode_in_halves(decode, list(range(16)))
    assert [len(c) for c in calls] == [16, 8, 4, 4, 4, 4]
    assert (split.splits, split.worked) == (2, 4)


def test_one_chunk_that_runs_out_of_memory_fails_with_the_error():
    decode, _, _ = fake_decoder(0)
    with pytest.raises(RuntimeError, match="out of memory"):
        decode_in_halves(decode, list(range(4)))


def test_other_errors_propagate_unchanged():
    error = ValueError("bad chunk")
    calls = []

    def decode(items):
        calls.append(items)
        raise error

    with pytest.raises(ValueError) as raised:
        decode_in_halves(decode, list(range(8)))
    assert raised.value is error and len(calls) == 1  # not split, not retried

    decode, calls, _ = fake_decoder(2, message="CUDA failed with error an illegal memory access")
    with pytest.raises(RuntimeError, match="illegal memory access"):
        decode_in_halves(decode, list(range(8)))
    assert len(calls) == 1


def test_torch_out_of_memory_is_recognised_by_name():
    OutOfMemoryError = type("OutOfMemoryError", (RuntimeError,), {})  # torch.cuda's, without torch
    assert is_out_of_memory(OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("CUDA failed with error out of memory"))
    assert not is_out_of_memory(RuntimeError("CUDA failed with error invalid argument"))
    assert not is_out_of_memory(MemoryError())  # host memory: not a batch-size problem


def test_a_decoder_returning_too_few_results_is_an_error():
    with pytest.raises(ValueError, match="results"):
        decode_in_halves(lambda items: items[:-1], [1, 2, 3])
    assert decode_in_halves(lambda items: items, []).results == []


# --- readers -------------------------------------------------------------------------------------


def test_real_nvml_reader_never_raises():
    reader = NvmlReader()
    found = reader.inventory()
    try:
        import pynvml

        pynvml.nvmlInit()
        has_driver = True
    except Exception:  # noqa: BLE001 - no library, no driver
        has_driver = False
    if not has_driver:  # this CPU machine
        assert found == [] and reader.read(0) is None
        return
    assert found, "NVML initialised but listed no visible GPU"
    for memory in found:
        assert memory.total_bytes > 0 and 0 <= memory.free_bytes <= memory.total_bytes and memory.name


def fake_pynvml(devices: dict[int, tuple[str, str, int, int]]):
    """A pynvml with devices {nvml index: (uuid, name, total, used)}."""

    class NVMLError(Exception):
        pass

    by_uuid = {uuid: index for index, (uuid, *_rest) in devices.items()}

    def by_index(index):
        if index not in devices:
            raise NVMLError("Invalid Argument")
        return index

    def by_uuid_handle(uuid):
        if uuid not in by_uuid:
            raise NVMLError("Not Found")
        return by_uuid[uuid]

    def memory(handle):
        _, _, total, used = devices[handle]
        return types.SimpleNamespace(total=total, used=used, free=total - used)

    return types.SimpleNamespace(
        NVMLError=NVMLError,
        nvmlInit=lambda: None,
        nvmlDeviceGetCount=lambda: len(devices),
        nvmlDeviceGetHandleByIndex=by_index,
        nvmlDeviceGetHandleByUUID=by_uuid_handle,
        nvmlDeviceGetMemoryInfo=memory,
        nvmlDeviceGetName=lambda handle: devices[handle][1],
    )


@pytest.fixture
def nvml(monkeypatch):
    devices = {0: ("GPU-aaa", "H100", 80 * GiB, 1 * GiB), 3: ("GPU-ddd", "H100", 80 * GiB, 9 * GiB)}
    monkeypatch.setitem(__import__("sys").modules, "pynvml", fake_pynvml(devices))
    return devices


def test_visible_index_maps_to_the_nvml_device(nvml, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # what Ray sets for a replica given GPU 3
    memory = NvmlReader().read(0)
    assert memory == GpuMemory(0, "H100", 80 * GiB, 9 * GiB, 71 * GiB)

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaa,GPU-ddd")
    assert [m.used_bytes for m in NvmlReader().inventory()] == [1 * GiB, 9 * GiB]

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert NvmlReader().read(1) is None  # not visible to this process

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    assert NvmlReader().read(0) is None and NvmlReader().inventory() == []  # NVMLError -> nothing

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert NvmlReader().inventory() == []


def test_nvml_init_failure_reads_as_nothing(monkeypatch):
    broken = fake_pynvml({})

    def fail():
        raise broken.NVMLError("Driver Not Loaded")

    broken.nvmlInit = fail
    monkeypatch.setitem(__import__("sys").modules, "pynvml", broken)
    reader = NvmlReader()
    assert reader.inventory() == [] and reader.read(0) is None


class StaticReader:
    def __init__(self, gpus: list[GpuMemory]):
        self.gpus = gpus

    def read(self, index):
        return self.gpus[index] if index < len(self.gpus) else None

    def inventory(self):
        return list(self.gpus)


def test_inventory_falls_back_to_rays_count(monkeypatch):
    one = GpuMemory(0, "H100", 80 * GiB, GiB, 79 * GiB)
    assert gpu.inventory(StaticReader([one])) == [one]
    assert gpu.ray_inventory() == []  # outside Ray
    logical = [GpuMemory(0, "logical GPU (Ray)", None, None, None)]
    monkeypatch.setattr(gpu, "ray_inventory", lambda: logical)
    assert gpu.inventory(StaticReader([])) == logical and not logical[0].known


# --- the start-up probe ----------------------------------------------------------------------------


class SimulatedGpu:
    """A reader whose device `used` a fake engine drives: a one-time cost on the first decode,
    then fixed + batch x per_chunk while a batch runs, dropping back when it ends (as
    CTranslate2's allocator returns blocks beyond its cache). A batch holds its peak until
    the reader has sampled it twice (or 1 s passed), so the poller cannot miss it."""

    def __init__(self, total: int, neighbours: int, fixed: int, once: int, per_chunk: int, per_model=None):
        self.total, self.per_chunk, self.once = total, per_chunk, once
        self.per_model = per_model or {}  # a model id -> its per-chunk cost (others: per_chunk)
        self.used = neighbours + fixed
        self.reads = 0
        self.batches: list[int] = []
        self._cond = threading.Condition()

    def read(self, index):
        with self._cond:
            self.reads += 1
            self._cond.notify_all()
            return GpuMemory(index, "sim", self.total, self.used, self.total - self.used)

    def inventory(self):
        return [self.read(0)]

    def transcribe_chunks(self, chunks, options):
        assert options.language == "en" and all(len(c.samples) == 30 * 16000 for c in chunks)
        self.batches.append(len(chunks))
        with self._cond:
            self.used += self.once
            self.once = 0
            resting = self.used
            self.used += len(chunks) * self.per_model.get(getattr(options, "model", ""), self.per_chunk)
            seen = self.reads
            self._cond.wait_for(lambda: self.reads >= seen + 2, timeout=1)  # the warm-up: no poller
            self.used = resting
        return []


def test_probe_measures_per_chunk_and_resident_bytes():
    sim = SimulatedGpu(total=80 * GiB, neighbours=2 * GiB, fixed=3 * GiB, once=GiB // 2, per_chunk=300 * MiB)
    before = GpuMemory(0, "sim", 80 * GiB, 2 * GiB, 78 * GiB)  # read before the model loaded
    placement = Placement("cuda", 1, 0.25, 0)
    found = measure(sim, sim, placement, before, n=4, headroom=0.15, init_torch=False)
    assert sim.batches == [1, 1, 4]  # warm-up, then the two measured points
    assert found == MemoryFigures(
        total_bytes=80 * GiB,
        share=0.25,
        resident_bytes=3 * GiB + GiB // 2,  # weights + the one-time cost, not the neighbours'
        free_bytes=78 * GiB,
        per_chunk_bytes=300 * MiB,
        headroom=0.15,
    )
    # a quarter: 20 GiB - 3.5 resident - 3 headroom = 13.5 GiB / 300 MiB = 46 chunks -> 32
    assert memory_cap(found) == 32


def test_probe_caps_by_the_costliest_of_the_models_held():
    per_model = {"tiny.en": 100 * MiB, "large-v3": 700 * MiB}
    sim = SimulatedGpu(80 * GiB, 0, 3 * GiB, 0, per_chunk=0, per_model=per_model)
    before = GpuMemory(0, "sim", 80 * GiB, 0, 80 * GiB)
    found = measure(sim, sim, Placement("cuda", 1, 1.0, 0), before, n=4, init_torch=False, model_ids=list(per_model))
    assert sim.batches == [1, 1, 4] * 2  # each model probed
    assert found.per_chunk_bytes == 700 * MiB and found.resident_bytes == 3 * GiB


def test_probe_without_growth_caps_nothing():
    sim = SimulatedGpu(total=80 * GiB, neighbours=0, fixed=3 * GiB, once=0, per_chunk=0)
    before = GpuMemory(0, "sim", 80 * GiB, 0, 80 * GiB)
    assert measure(sim, sim, Placement("cuda", 1, 1.0, 0), before, init_torch=False) is None


def test_peak_used_sees_what_a_read_after_the_batch_misses():
    sim = SimulatedGpu(total=10 * GiB, neighbours=0, fixed=GiB, once=0, per_chunk=GiB)
    chunks = [types.SimpleNamespace(samples=[0.0] * (30 * 16000))] * 3
    with PeakUsed(sim, 0) as peak:
        sim.transcribe_chunks(chunks, types.SimpleNamespace(language="en"))
    assert peak.peak == 4 * GiB and sim.read(0).used_bytes == GiB


def test_a_size_that_failed_later_in_the_split_is_not_reported_as_working():
    calls = []

    def decode(part):
        calls.append(len(part))
        # 16 fails; the first 8 decodes, then the neighbour grows and the second 8 fails
        if len(part) == 16 or (len(part) == 8 and len(calls) > 2):
            raise RuntimeError("CUDA failed with error out of memory")
        return part

    split = decode_in_halves(decode, list(range(16)))
    assert split.results == list(range(16))
    assert split.worked is not None and split.worked < 8, (split, calls)
