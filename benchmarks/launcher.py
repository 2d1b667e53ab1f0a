"""Start the service from this process on a local Ray cluster bound to 127.0.0.1, the way
`serve run config.yaml` does (a declarative config whose import path is serve.app:build_app),
for the tests and benchmarks. A later `redeploy` with only `user_config` changed reconfigures
the replicas in place, as `serve deploy` would.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP_NAME = "whisperx"


def schema(args: dict | None, port: int, deployments: dict[str, dict] | None = None) -> dict:
    return {
        "proxy_location": "HeadOnly",
        "controller_options": controller_options(),
        "http_options": {"host": "127.0.0.1", "port": port, "request_timeout_s": 900},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": "serve.app:build_app",
                "args": args or {},
                "deployments": [{"name": name, **options} for name, options in (deployments or {}).items()],
            }
        ],
    }


def start(
    args: dict | None = None,
    port: int = 8000,
    deployments: dict[str, dict] | None = None,
    num_cpus: int | None = None,
    ready_timeout_s: float = 300.0,
    every_model: bool = True,
) -> str:
    """Deploy and wait until /healthz answers 200 and, with `every_model`, until no model is
    loading (what a benchmark measures); returns the base URL."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level="WARNING",
            log_to_driver=False,
        )
    _deploy(schema(args, port, deployments))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the service at {base} was not ready after {ready_timeout_s:.0f} s")
        time.sleep(0.25)
    if every_model:
        wait_loaded(base, max(1.0, deadline - time.monotonic()))
    return base


def wait_loaded(base: str, timeout_s: float = 300.0) -> None:
    """Wait until /healthz names no deployment as loading (the cpu profile's Diarizer and Aligner
    load after the Transcriber, once the service is already healthy)."""
    import json

    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
            if not json.load(response)["loading"]:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the service at {base} was still loading after {timeout_s:.0f} s")
        time.sleep(0.25)


def redeploy(args: dict | None, port: int, deployments: dict[str, dict] | None = None) -> None:
    _deploy(schema(args, port, deployments))


def _deploy(config: dict) -> None:
    from ray.serve._private import api as serve_api
    from ray.serve.schema import ServeDeploySchema

    validated = ServeDeploySchema.model_validate(config)
    client = serve_api.serve_start(
        http_options=validated.http_options.model_dump(),
        proxy_location=validated.proxy_location,
        controller_options=validated.controller_options,
    )
    client.deploy_apps(validated, _blocking=False)


def controller_options() -> dict | None:
    """config.yaml's options for Serve's controller (its idle work), as `serve run` applies them."""
    import yaml

    return yaml.safe_load((REPO / "config.yaml").read_text()).get("controller_options")


def stop() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
