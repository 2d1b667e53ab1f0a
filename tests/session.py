"""The test run's one local Ray cluster and the Serve apps deployed on it (tests/README.md).

Ray starts once per pytest run. The service tests share one app, deployed from config.yaml's
own application block (the README's config) with a small test overlay: its port, an API key
and a cache directory. A test changes what `user_config` reconfigures (`Service.tune`), never
the app. Where the deployments themselves differ (the Vad deployment and a wav2vec2 Aligner,
the multilingual model), another app replaces the current one on the same cluster; the
collection order (conftest.py) keeps each app's tests together, so each app deploys once.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from benchmarks import launcher

REPO = Path(__file__).resolve().parent.parent
# The shared app's port; another port lets two test runs share a machine (their Serve proxies would collide).
PORT = int(os.environ.get("WXS_TEST_PORT", "18123"))
API_KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# Logical CPUs: the cpu profile's replicas reserve 2, a batch job's actors fit beside them.
RAY_CPUS = 5
# One logical GPU, so placement tests see Ray's GPU bookkeeping; nothing here reserves it
# unless it asks (the cpu profile and the batch job's defaults reserve none).
RAY_GPUS = 1


def start_ray() -> None:
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=RAY_CPUS,
            num_gpus=RAY_GPUS,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level="ERROR",
            log_to_driver=False,
        )


def stop_ray() -> None:
    """Serve and Ray down (a module with a cluster of its own needs the process's driver)."""
    import ray

    if ray.is_initialized():
        launcher.stop()


def config_application(path: Path = REPO / "config.yaml") -> tuple[dict, dict[str, dict]]:
    """(args, deployments by name) of a Serve config file's application."""
    app = yaml.safe_load(path.read_text())["applications"][0]
    return app.get("args") or {}, {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app["deployments"]}


@dataclass(frozen=True)
class AppSpec:
    """One Serve app: config.yaml's args and deployments with `overlay` laid over the args."""

    name: str
    overlay: dict = field(default_factory=dict)

    def args(self, cache_dir: Path) -> dict:
        args, _ = config_application()
        args = copy.deepcopy(args)
        for key, value in self.overlay.items():
            args[key] = {**args[key], **value} if isinstance(value, dict) and isinstance(args.get(key), dict) else value
        args["cache"] = {**args.get("cache", {}), "directory": str(cache_dir)}
        # config.yaml reads the key from WXS_API_KEY; the Ingress's environment sets it.
        ingress = args.setdefault("deployments", {}).setdefault("Ingress", {})
        ingress["ray_actor_options"] = {"runtime_env": {"env_vars": {args["api_key_env"]: API_KEY}}}
        return args

    def deployments(self) -> dict[str, dict]:
        return config_application()[1]


class Service:
    """The app in service now: its URL, an authorised client, and `tune` for user_config."""

    def __init__(self, spec: AppSpec, args: dict, base: str):
        self.spec, self.args, self.base = spec, args, base
        self.client = httpx.Client(base_url=base, headers=AUTH, timeout=600)
        self._tuned: dict[str, dict] = {}

    def health(self) -> dict:
        return self.client.get("/healthz").json()

    def tune(self, **user_configs: dict) -> None:
        """Lay `user_config` over the app's own, per deployment (Ingress: request limits,
        admission, retries; Transcriber: batching), redeploy, and wait until it is in force.
        Only user_config changes, so Serve reconfigures the replicas: none restarts."""
        deployments = self.spec.deployments()
        for name, given in user_configs.items():
            options = deployments.setdefault(name, {})
            options["user_config"] = {**(options.get("user_config") or {}), **given}
        # The Ingress always gets a user_config once tuned, so a reset reaches reconfigure too.
        deployments.setdefault("Ingress", {}).setdefault("user_config", {})
        launcher.redeploy(self.args, PORT, deployments)
        expected = {**{n: dict(d.get("user_config") or {}) for n, d in deployments.items()}}
        deadline = time.monotonic() + 120
        while not self._in_force(expected):
            assert time.monotonic() < deadline, f"user_config {expected} not in force after 120 s"
            time.sleep(0.2)
        self._tuned = user_configs

    def reset(self) -> None:
        """Back to the app's own user_config (no-op when nothing was tuned)."""
        if self._tuned:
            self.tune()
            self._tuned = {}

    def _in_force(self, expected: dict[str, dict]) -> bool:
        try:
            health = self.health()
        except (httpx.HTTPError, ValueError):
            return False
        if "limits" not in health:
            return False
        deployed = launcher_args_limits(self.args)
        ingress = {**deployed, **expected.get("Ingress", {})}
        transcriber = expected.get("Transcriber", {})
        return all(health["limits"].get(k) == v for k, v in ingress.items()) and all(
            health["transcriber"].get(k) == v for k, v in transcriber.items()
        )


def launcher_args_limits(args: dict) -> dict:
    """The Ingress's tunable values as the app's args deploy them."""
    from serve.config import INGRESS_TUNABLE, ServiceArgs

    validated = ServiceArgs.model_validate(args)
    return {name: getattr(validated, name) for name in INGRESS_TUNABLE}


class Services:
    """The session's Serve apps, one deployed at a time on the session's cluster."""

    def __init__(self, cache_dir: Path):
        self.cache_dir = cache_dir
        self.current: Service | None = None

    def use(self, spec: AppSpec) -> Service:
        if self.current is not None and self.current.spec == spec:
            self.current.reset()
            return self.current
        start_ray()
        if self.current is not None:
            self._delete()
        args = spec.args(self.cache_dir)
        # Healthy is enough: the first tests run while the cpu profile's Diarizer loads.
        base = launcher.start(args, port=PORT, deployments=spec.deployments(), ready_timeout_s=600, every_model=False)
        self.current = Service(spec, args, base)
        return self.current

    def _delete(self) -> None:
        """The old app goes first, so /healthz answers only once the new one is ready."""
        from ray import serve

        assert self.current is not None
        self.current.client.close()
        serve.delete(launcher.APP_NAME, _blocking=True)
        self.current = None

    def close(self) -> None:
        if self.current is not None:
            self.current.client.close()
            self.current = None
