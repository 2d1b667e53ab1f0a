"""Logical GPUs (WXS_LOGICAL_GPUS): a reservation's GPU ids are recorded in the Placement; with
the opt-in the stage runs on the CPU and keeps its ids and share, without it it runs on CUDA
and a machine without CUDA fails loudly rather than silently computing on the CPU."""

from __future__ import annotations

import types

import pytest

from cluster import placement as ray_placement
from pipeline.errors import InvalidOption
from pipeline.placement import Placement


def test_real_reservation_records_its_ids_and_runs_on_cuda():
    p = Placement.from_reservation([2, 3], 1.25).with_gpu_share(2.0)
    assert (p.device, p.torch_device, p.gpu_ids, p.gpu_share, p.cpu_threads) == ("cuda", "cuda:0", ("2", "3"), 2.0, 2)
    assert not p.logical_gpus


def test_logical_reservation_runs_on_the_cpu_and_keeps_ids_and_share():
    p = Placement.from_reservation(["1"], 0.5, logical_gpus=True).with_gpu_share(0.25)
    assert (p.device, p.torch_device, p.gpu_ids, p.gpu_share, p.cpu_threads) == ("cpu", "cpu", ("1",), 0.25, 1)
    assert p.logical_gpus


@pytest.mark.parametrize("logical", [False, True])
def test_no_reservation_has_no_ids_and_no_share(logical):
    p = Placement.from_reservation([], 2.0, logical_gpus=logical).with_gpu_share(0.25)
    assert (p.device, p.gpu_ids, p.gpu_share, p.logical_gpus) == ("cpu", (), 0.0, False)


def test_the_library_default_has_no_ids():
    assert Placement.local_cpu(threads=2).gpu_ids == ()


@pytest.fixture
def fake_reservation(monkeypatch):
    """What Ray's runtime context answers inside an actor that reserved GPU 1 and half a CPU."""
    import ray

    context = types.SimpleNamespace(get_assigned_resources=lambda: {"CPU": 0.5, "GPU": 0.25})
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [1])
    monkeypatch.setattr(ray, "get_runtime_context", lambda: context)
    monkeypatch.delenv(ray_placement.LOGICAL_GPUS_ENV, raising=False)
    return monkeypatch


def test_from_ray_uses_cuda_unless_told_the_gpus_are_logical(fake_reservation):
    real = ray_placement.from_ray()
    assert (real.device, real.gpu_ids, real.gpu_share) == ("cuda", ("1",), 0.25)
    for value in ("1", "true", "YES"):
        fake_reservation.setenv(ray_placement.LOGICAL_GPUS_ENV, value)
        logical = ray_placement.from_ray()
        assert (logical.device, logical.gpu_ids, logical.gpu_share, logical.cpu_threads) == ("cpu", ("1",), 0.25, 1)
    for value in ("0", "false", ""):
        fake_reservation.setenv(ray_placement.LOGICAL_GPUS_ENV, value)
        assert ray_placement.from_ray().device == "cuda"


def test_an_unclear_setting_is_an_error_not_a_guess(fake_reservation):
    fake_reservation.setenv(ray_placement.LOGICAL_GPUS_ENV, "maybe")
    with pytest.raises(InvalidOption, match="WXS_LOGICAL_GPUS"):
        ray_placement.from_ray()


def test_a_real_reservation_without_cuda_fails_loudly():
    """Without the opt-in, a GPU reservation on a machine without CUDA is an error at model load,
    never a quiet fall back to the CPU."""
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        pytest.skip("this machine has CUDA: the reservation would simply work")
    from pipeline.asr import Transcriber
    from pipeline.config import PipelineConfig

    with pytest.raises(Exception, match="(?i)cuda"):
        Transcriber(PipelineConfig().asr, Placement.from_reservation([0], 1.0))
