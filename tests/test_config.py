"""Both service configs are valid Serve configs, and the GPU cluster plan yields valid
deployment options (checked without GPUs: nothing here is run on one)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.errors import InvalidOption
from serve.config import ServiceConfig

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["config.yaml", "config.gpu.yaml"])
def test_config_files_validate(name):
    from ray.serve.schema import ServeDeploySchema

    raw = yaml.safe_load((REPO / name).read_text())
    schema = ServeDeploySchema.model_validate(raw)
    app = schema.applications[0]
    assert app.import_path == "serve.app:build_app"
    ServiceConfig.from_args(app.args)
    if name == "config.yaml":
        assert schema.http_options.host == "127.0.0.1" and schema.http_options.port == 8000


def test_gpu_plan_gives_valid_deployment_options():
    from serve.app import default_plan, merged_options
    from serve.deployments import AlignerDeployment, DiarizerDeployment, TranscriberDeployment
    from serve.ingress import Ingress

    args = yaml.safe_load((REPO / "config.gpu.yaml").read_text())["applications"][0]["args"]
    config = ServiceConfig.from_args(args)
    plan = default_plan(gpus=8)
    assert plan["Transcriber"]["ray_actor_options"]["num_gpus"] == 1
    assert plan["Aligner"]["ray_actor_options"]["num_gpus"] == 0.25
    for name, deployment in (("Ingress", Ingress), ("Transcriber", TranscriberDeployment),
                             ("Aligner", AlignerDeployment), ("Diarizer", DiarizerDeployment)):
        options = merged_options(plan, config.deployments, name, config)
        deployment.options(**options)          # raises on an invalid option
    transcriber = merged_options(plan, config.deployments, "Transcriber", config)
    assert transcriber["autoscaling_config"]["max_replicas"] == 8
    assert transcriber["ray_actor_options"] == {"num_gpus": 1, "num_cpus": 4}


def test_unknown_settings_are_rejected():
    with pytest.raises(InvalidOption):
        ServiceConfig.from_args({"max_upload_byte": 1})
    with pytest.raises(InvalidOption):
        ServiceConfig.from_args({"deployments": {"Transcribr": {}}})
