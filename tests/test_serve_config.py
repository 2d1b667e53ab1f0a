"""Both service configs validate as Serve configs and as our typed args, a bad field fails the
way `serve run` reports it (naming the field), and the GPU profile yields valid deployment
options on a machine without GPUs (nothing here runs on one)."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import yaml

from serve.config import DEPLOYMENT_NAMES, ServiceArgs

REPO = Path(__file__).resolve().parent.parent


def app_of(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())["applications"][0]


@pytest.mark.parametrize("name", ["config.yaml", "config.gpu.yaml"])
def test_config_files_validate(name):
    from ray.serve.schema import ServeDeploySchema

    raw = yaml.safe_load((REPO / name).read_text())
    schema = ServeDeploySchema.model_validate(raw)
    app = schema.applications[0]
    assert app.import_path == "serve.app:build_app"
    ServiceArgs.model_validate(app.args)
    if name == "config.yaml":
        assert schema.http_options.host == "127.0.0.1" and schema.http_options.port == 8000


def test_gpu_config_gives_valid_deployment_options_without_probing():
    from serve.app import deployment_options
    from serve.deployments import AlignerDeployment, DiarizerDeployment, TranscriberDeployment, VadDeployment
    from serve.ingress import Ingress

    args = ServiceArgs.model_validate(app_of("config.gpu.yaml")["args"])
    config = args.pipeline_config()
    # The config names GPU models and placements; this machine has no GPU and none is probed.
    assert config.asr.model == "large-v3-turbo" and config.asr.compute_type == "float16"
    assert config.align.model == "default" and config.diarize.model == "pyannote/speaker-diarization-community-1"
    for name, deployment in zip(
        DEPLOYMENT_NAMES, (Ingress, TranscriberDeployment, AlignerDeployment, DiarizerDeployment, VadDeployment)
    ):
        deployment.options(**deployment_options(args, name))  # raises on an invalid option
    transcriber = deployment_options(args, "Transcriber")
    assert transcriber["autoscaling_config"]["max_replicas"] == 8
    # a replica is added only past two full batches of the batch size this file deploys
    batching = next(d["user_config"] for d in app_of("config.gpu.yaml")["deployments"] if d["name"] == "Transcriber")
    assert transcriber["autoscaling_config"]["target_ongoing_requests"] == 2 * batching["max_batch_size"]
    assert transcriber["ray_actor_options"] == {"num_gpus": 1, "num_cpus": 4}
    assert deployment_options(args, "Aligner")["ray_actor_options"]["num_gpus"] == 0.25


def test_bad_args_fail_serve_run_naming_the_field():
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    from serve.app import build_app

    for bad, field in (
        ({"max_upload_byte": 1}, "max_upload_byte"),
        ({"deployments": {"Transcribr": {}}}, "Transcribr"),
        ({"vad_step_seconds": -1}, "vad_step_seconds"),
        ({"profile": "tpu"}, "profile"),
    ):
        with pytest.raises(pydantic.ValidationError) as info:
            call_user_app_builder_with_args_if_necessary(build_app, bad)  # what `serve run` calls
        assert field in str(info.value)
    app = call_user_app_builder_with_args_if_necessary(build_app, app_of("config.yaml")["args"])
    assert type(app).__name__ == "Application"
