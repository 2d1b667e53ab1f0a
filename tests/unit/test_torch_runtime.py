"""Torch stage settings: precision and compile, as every entry point sets them (no models)."""

from __future__ import annotations

import pytest
import torch

from pipeline.config import PipelineConfig
from pipeline.errors import InvalidOption
from pipeline.placement import Placement
from pipeline.torch_runtime import TorchRuntime, _autocast_forward, _to_float32, parse_dtypes


def test_parse_dtypes_for_all_or_some_stages():
    assert parse_dtypes(None) == {}
    assert parse_dtypes("float16") == {"vad": "float16", "align": "float16", "diarize": "float16"}
    assert parse_dtypes("align=float16, vad=bfloat16") == {"align": "float16", "vad": "bfloat16"}
    with pytest.raises(InvalidOption, match="asr"):
        parse_dtypes("asr=float16")


def test_with_torch_sets_each_stage():
    config = PipelineConfig().with_torch({"align": "float16"}, compile=True)
    assert config.align.runtime == TorchRuntime("float16", True)
    assert config.vad.runtime == TorchRuntime("float32", True)
    assert config.diarize.runtime == TorchRuntime("float32", True)
    assert PipelineConfig().with_torch() == PipelineConfig()
    with pytest.raises(InvalidOption, match="torch dtype"):
        PipelineConfig().with_torch({"vad": "int8"})
    with pytest.raises(InvalidOption, match="not asr"):
        PipelineConfig().with_torch({"asr": "float16"})


def test_reduced_precision_needs_a_gpu():
    TorchRuntime("float32", compile=True).check(Placement(), "vad")
    for dtype in ("float16", "bfloat16"):
        with pytest.raises(InvalidOption, match=f"align: torch dtype {dtype} needs a GPU"):
            TorchRuntime(dtype).check(Placement(), "align")
        TorchRuntime(dtype).check(Placement(device="cuda", gpu_share=1.0), "align")


def test_autocast_forward_returns_float32_close_to_float32():
    """The wrapper the GPU runs (checked here on the CPU's bfloat16 matmul, which exists
    everywhere): outputs come back float32, within bfloat16's precision of the original."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 32)
    x = torch.randn(8, 64)
    reference = layer(x)
    wrapped = _autocast_forward(layer.forward, "cpu", "bfloat16")
    out = wrapped(x)
    assert out.dtype == torch.float32
    assert not torch.equal(out, reference)  # it did run in bfloat16
    assert torch.allclose(out, reference, atol=0.05, rtol=0.02)


def test_to_float32_walks_tuples_and_model_outputs():
    half = torch.ones(2, dtype=torch.float16)
    lengths = torch.tensor([3, 4])
    emissions, kept = _to_float32((half, lengths))
    assert emissions.dtype == torch.float32 and kept.dtype == torch.int64
    output = _to_float32({"logits": half})
    assert output["logits"].dtype == torch.float32


def test_service_args_refuse_reduced_precision_without_a_gpu():
    from pydantic import ValidationError

    from serve.config import ServiceArgs

    with pytest.raises(
        ValidationError, match="align: torch dtype float16 needs a GPU: the Aligner deployment reserves"
    ):
        ServiceArgs(torch_dtype={"align": "float16"})
    gpu = ServiceArgs(profile="gpu", torch_dtype={"align": "float16", "diarize": "bfloat16"}, torch_compile=True)
    config = gpu.pipeline_config()
    assert config.align.runtime == TorchRuntime("float16", True)
    assert config.diarize.runtime == TorchRuntime("bfloat16", True)
    # The gpu profile's VAD runs in the Vad deployment on a GPU share; in the ingress it has none.
    assert ServiceArgs(profile="gpu", torch_dtype={"vad": "float16"}).pipeline_config().vad.runtime.dtype == "float16"
    with pytest.raises(ValidationError, match="vad: .* the Ingress deployment reserves none"):
        ServiceArgs(profile="gpu", vad_placement="ingress", torch_dtype={"vad": "float16"})


def test_gpu_model_choices_resolve_or_name_the_setting(monkeypatch):
    """distil-large-v3 and int8_float16 are selectable; a model not in the HF cache fails with
    the setting to change (nothing is downloaded unless WXS_ALLOW_DOWNLOAD=1)."""
    from pipeline.errors import ModelNotFound
    from pipeline.models import resolve_asr_model
    from serve.config import ServiceArgs

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("WXS_ALLOW_DOWNLOAD", raising=False)
    config = ServiceArgs(profile="gpu", asr_model="distil-large-v3", compute_type="int8_float16").pipeline_config()
    assert (config.asr.model, config.asr.compute_type) == ("distil-large-v3", "int8_float16")
    assert ServiceArgs(profile="gpu").pipeline_config().asr.model == "large-v3-turbo"
    with pytest.raises(ModelNotFound, match="asr.model"):
        resolve_asr_model("distil-large-v3")


def test_batch_job_refuses_reduced_precision_before_starting():
    """Its preprocess actors (the VAD) never hold a GPU, and alignment / diarization only when
    --num-gpus / --diarize-gpus give them one: the job fails up front, naming the flag."""
    from cluster.batch import RunOptions, plan_job
    from pipeline.plan import Request

    with pytest.raises(InvalidOption, match="vad: torch dtype float16 needs a GPU: the preprocess actors run on CPUs"):
        plan_job(PipelineConfig().with_torch({"vad": "float16"}), Request(), RunOptions())
    with pytest.raises(InvalidOption, match="align: .*--num-gpus"):
        plan_job(PipelineConfig().with_torch({"align": "bfloat16"}), Request(), RunOptions())
    with pytest.raises(InvalidOption, match="diarize: .*--diarize-gpus"):
        plan_job(PipelineConfig().with_torch({"diarize": "float16"}), Request(), RunOptions(asr_num_gpus=1))
