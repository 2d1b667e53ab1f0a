"""Scale-out on a real multi-node Ray cluster (`ray.cluster_utils.Cluster`: a head and two worker
nodes on 127.0.0.1, each a separate raylet with its own object store). The workers declare
logical GPUs; no CUDA is used, only Ray's scheduling: the model replicas and actors run with
WXS_LOGICAL_GPUS=1 (a runtime_env's env_vars, as config.yaml would set it), so they reserve
GPUs and compute on the CPU (cluster/placement.py).

- placement: whole-GPU Transcribers and quarter-GPU Aligner / Diarizer / Vad replicas each
  report the GPU ids and node Ray gave them, and those agree with how Ray and Serve scheduled them;
- autoscaling: a burst of real HTTP requests scales the Transcribers to their maximum, and
  they scale back down once it stops;
- node loss: a worker node removed while requests run fails no request, and the replicas it
  held run again on the remaining nodes;
- batch: the Ray Data job spreads its GPU actors over the nodes and writes what a one-node
  run writes.

The cluster runs in its own RAY_TMPDIR, so another `ray.init()` on this machine never finds it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import ffmpeg

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("own_ray_cluster")]  # its own clusters, after the rest

PORT = 18175
APP = "whisperx"
HEAD_RESOURCE = "wxs_head"  # only the head has it: the Ingress asks for a sliver, so it stays there
GPUS_PER_WORKER = 3  # 3 whole-GPU Transcribers + 3 quarter-GPU replicas fit however they land
GPU_IDS = {str(i) for i in range(GPUS_PER_WORKER)}  # the ids Ray gives a node's logical GPUs
SHARE = 0.25
LOGICAL_GPUS = {"env_vars": {"WXS_LOGICAL_GPUS": "1"}}
MODEL_DEPLOYMENTS = ("Transcriber", "Aligner", "Diarizer", "Vad")
# Serve's replicas and handles report their load every second (default 10 s), so the
# autoscaler sees a burst, and its end, within the test's small delays.
FAST_METRICS = {
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
}
AUTOSCALING = {
    "min_replicas": 1,
    "initial_replicas": 1,
    "max_replicas": 3,
    "target_ongoing_requests": 2,  # chunk calls per replica: a few long requests want 3
    "upscale_delay_s": 1,
    "downscale_delay_s": 5,
    "metrics_interval_s": 1,
    "look_back_period_s": 3,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ray_cluster(workers: int = 2, worker_cpus: int = 4, dashboard: bool = False, runtime_env: dict | None = None):
    """A head (no GPU; HEAD_RESOURCE) and `workers` nodes of GPUS_PER_WORKER logical GPUs, this
    process connected as the driver. Stops Serve, Ray and every node when done."""
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", *FAST_METRICS)}
    temp = tempfile.mkdtemp(prefix="wxs", dir="/tmp")  # short: Ray's socket paths live under it
    os.environ.update({"RAY_TMPDIR": temp, **FAST_METRICS})
    # A driver joining a cluster turns a loopback GCS address into this machine's outward IP
    # (services.resolve_ip_for_localhost), where nothing listens: every node here is on
    # 127.0.0.1. Ray's single-machine mode (what it uses on macOS and Windows) keeps loopback.
    multi_machine, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False
    cluster = None
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 2,
                "num_gpus": 0,
                "resources": {HEAD_RESOURCE: 1},
                "node_ip_address": "127.0.0.1",
                "include_dashboard": dashboard,
                "dashboard_host": "127.0.0.1",
                "dashboard_port": _free_port(),
                "object_store_memory": 300 << 20,
            },
        )
        nodes = [
            cluster.add_node(
                num_cpus=worker_cpus,
                num_gpus=GPUS_PER_WORKER,
                node_ip_address="127.0.0.1",
                object_store_memory=200 << 20,
            )
            for _ in range(workers)
        ]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, runtime_env=runtime_env, logging_level="ERROR", log_to_driver=False)
        yield cluster, nodes
    finally:
        try:
            if ray.is_initialized():
                from ray import serve

                serve.shutdown()
        finally:
            ray.shutdown()
            if cluster is not None:
                cluster.shutdown()
            ray_constants.ENABLE_RAY_CLUSTER = multi_machine
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            shutil.rmtree(temp, ignore_errors=True)


def service_args(aligner_dir, transcriber: dict) -> dict:
    """The cpu profile's models (bundled tiny.en, a tiny wav2vec2 aligner, the offline diarizer)
    placed as the gpu profile places them: Transcribers on whole GPUs, the rest on quarters."""

    def on_gpus(share: float, cpus: float) -> dict:
        return {"ray_actor_options": {"num_gpus": share, "num_cpus": cpus, "runtime_env": LOGICAL_GPUS}, "threads": 1}

    return {
        "max_audio_seconds": 600,
        "max_queue_wait_s": 3600,  # these tests are about scaling and losing nodes, not shedding load
        "align_model": str(aligner_dir),
        "vad_placement": "deployment",
        "cache": {"enabled": False},  # every request must reach the replicas
        "deployments": {
            "Ingress": {"ray_actor_options": {"num_cpus": 0.25, "resources": {HEAD_RESOURCE: 0.01}}},
            "Transcriber": {**on_gpus(1, 0.5), **transcriber},
            "Aligner": on_gpus(SHARE, 0.25),
            "Diarizer": on_gpus(SHARE, 0.25),
            "Vad": on_gpus(SHARE, 0.25),
        },
    }


# --- what Serve scheduled, and what each replica says -------------------------------------------


def serve_replicas() -> dict[str, list[dict]]:
    """Serve's own record: each deployment's replicas with state, pid and node id."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    deployments = details["applications"][APP]["deployments"]
    return {name: deployments[name]["replicas"] for name in deployments}


def running(name: str) -> int:
    from ray import serve

    app = serve.status().applications.get(APP)
    deployment = app.deployments.get(name) if app else None
    return deployment.replica_states.get("RUNNING", 0) if deployment else 0


def wait_settled(counts: dict[str, int | None], timeout_s: float = 300) -> dict[str, list[dict]]:
    """Until every deployment runs only RUNNING replicas, as many as `counts` says (None: any
    number); returns Serve's record of them."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while True:
        status = serve.status().applications.get(APP)
        replicas = serve_replicas() if status else {}
        states = {name: collections.Counter(r["state"] for r in rs) for name, rs in replicas.items()}
        if (
            status
            and status.status == "RUNNING"
            and all(
                set(states.get(name, {})) == {"RUNNING"}
                and (count is None or states[name]["RUNNING"] == count)
                and status.deployments[name].status == "HEALTHY"
                for name, count in counts.items()
            )
        ):
            return replicas
        assert time.monotonic() < deadline, f"not settled after {timeout_s:.0f} s: {states}"
        time.sleep(1.0)


def replica_reports(name: str, expected: int, timeout_s: float = 120) -> list[dict]:
    """Each replica's own info(), asked through its deployment handle until every one of the
    `expected` replicas has answered."""
    from ray import serve

    handle = serve.get_deployment_handle(name, app_name=APP)
    reports: dict[tuple, dict] = {}
    deadline = time.monotonic() + timeout_s
    while len(reports) < expected:
        assert time.monotonic() < deadline, f"only {len(reports)} of {expected} {name} replicas answered"
        for response in [handle.info.remote() for _ in range(4 * expected)]:
            info = response.result(timeout_s=60)
            reports[(info["node_id"], info["pid"])] = info
    assert len(reports) == expected, f"{name}: more replicas answered than Serve runs: {list(reports)}"
    return list(reports.values())


# --- d. the batch job (first: the service is deployed on the same cluster after it) ------------


@pytest.fixture(scope="module")
def cluster():
    """The module's one cluster: the batch job runs on it first, then the service's tests."""
    with ray_cluster(dashboard=True, runtime_env=LOGICAL_GPUS) as (head_and_nodes, workers):
        yield head_and_nodes, workers


@pytest.fixture(scope="module")
def batch_corpus(speech_dir, pyannote_sample, tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    for path in sorted((speech_dir / "librispeech").glob("*.wav"))[:5]:
        shutil.copy(path, root / path.name)
    shutil.copy(speech_dir / "jfk.flac", root / "jfk.flac")
    shutil.copy(pyannote_sample, root / "call.wav")
    return root


def _rows(output) -> dict[str, dict]:
    import pyarrow.parquet as pq

    return {os.path.basename(r["path"]): r for r in pq.read_table(str(output)).to_pylist()}


def _words(segments: list[dict]) -> list[tuple]:
    return [(w["word"], w["start"], w["end"]) for s in segments for w in s["words"]]


def test_batch_job_spreads_over_nodes_and_writes_what_one_node_writes(cluster, batch_corpus, local_pipeline, tmp_path):
    """Two GPU nodes, an ASR actor on a (logical) GPU each, preprocessing spread beside them:
    each file's row is what the library gives on one CPU (tests/test_batch.py proves a one-node
    job gives that too), under the key a one-node CPU job computes for it."""
    import hashlib

    from ray.util.state import list_actors

    from cluster.batch import RunOptions, plan_job, run_batch
    from cluster.stages import file_key
    from pipeline.config import PipelineConfig
    from pipeline.plan import Request

    _, workers = cluster
    run = RunOptions(progress=False, asr_actors=2, asr_num_gpus=1, preprocess_actors=2, files_per_batch=2)
    many = run_batch(str(batch_corpus), str(tmp_path / "many"), PipelineConfig(), Request(), run)
    actors = list_actors(detail=True, limit=1000)  # alive and dead: the pools are gone by now
    worker_ids = {n.node_id for n in workers}
    # A job with no GPU reservation: the key a laptop's run computes (compute type included).
    one_node = plan_job(PipelineConfig(), Request(), RunOptions(progress=False))
    by_stage = collections.defaultdict(list)  # Ray Data names its actors MapWorker(MapBatches(<stage>))
    for actor in actors:
        if "MapWorker" in actor.class_name:
            by_stage[actor.class_name].append(actor.node_id)
    print({stage: sorted(node[:8] for node in nodes) for stage, nodes in by_stage.items()})

    asr = by_stage["MapWorker(MapBatches(Transcribe))"]
    assert len(asr) == 2 and set(asr) == worker_ids, "the ASR actors should be one on each GPU node"
    assert (many.files_done, many.failures) == (7, 0)

    spread = _rows(tmp_path / "many")
    assert sorted(spread) == sorted(p.name for p in batch_corpus.iterdir())
    for name, row in spread.items():
        path = batch_corpus / name
        assert row["key"] == file_key(hashlib.sha256(path.read_bytes()).hexdigest(), one_node), name
        expected = local_pipeline.transcribe(path).to_dict()
        assert (row["text"], row["language"], row["num_words"]) == (
            expected["text"],
            expected["language"],
            len(expected["word_segments"]),
        ), name
        assert _words(json.loads(row["segments_json"])) == _words(expected["segments"]), name
    assert "ask not what your country" in spread["jfk.flac"]["text"].lower()


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aligner_dir(tiny_wav2vec2):
    return tiny_wav2vec2


@pytest.fixture(scope="module")
def long_audio(pyannote_sample, tmp_path_factory) -> bytes:
    """~60 s of two-speaker speech (sample.wav twice): 2-3 chunks a request."""
    path = tmp_path_factory.mktemp("long") / "long.wav"
    ffmpeg("-stream_loop", "1", "-i", str(pyannote_sample), "-c", "copy", str(path))
    return path.read_bytes()


@pytest.fixture(scope="module")
def service(cluster, aligner_dir):
    """The service on the 3-node cluster, three Transcriber replicas to start with. The tests
    below share it in order; the node-loss test goes last (it leaves one worker)."""
    from benchmarks import launcher

    head_and_nodes, workers = cluster
    base = launcher.start(
        service_args(aligner_dir, {"num_replicas": 3}), port=PORT, ready_timeout_s=600, every_model=False
    )
    with httpx.Client(base_url=base, timeout=600) as client:
        yield {"cluster": head_and_nodes, "workers": workers, "client": client, "aligner_dir": aligner_dir}


def _transcribe(client: httpx.Client, audio: bytes, diarize: bool = False) -> httpx.Response:
    return client.post(f"/v1/transcribe?language=en&diarize={str(diarize).lower()}", content=audio)


def _ok(responses: list[httpx.Response]) -> list[dict]:
    failed = [(r.status_code, r.text[:300]) for r in responses if r.status_code != 200]
    assert not failed, failed
    bodies = [r.json() for r in responses]
    for body in bodies:
        assert "New Jersey" in body["text"], body["text"][:200]
    return bodies


# --- a. placement ---------------------------------------------------------------------------------


def test_replicas_run_on_the_gpus_ray_gave_them(service):
    import ray

    workers = {node.node_id for node in service["workers"]}
    head = service["cluster"].head_node.node_id
    scheduled = wait_settled({"Ingress": 1, "Transcriber": 3, "Aligner": 1, "Diarizer": 1, "Vad": 1})
    reports = {name: replica_reports(name, len(scheduled[name])) for name in MODEL_DEPLOYMENTS}
    for name, infos in reports.items():
        print(name, [(i["node_id"][:8], i["gpu_ids"], i["gpu_share"], i["device"]) for i in infos])

    # Each replica's report is the replica Serve scheduled, on the node Serve says.
    for name, infos in reports.items():
        assert {(i["node_id"], i["pid"]) for i in infos} == {(r["node_id"], r["pid"]) for r in scheduled[name]}, name
    assert {r["node_id"] for r in scheduled["Ingress"]} == {head}

    used: dict[tuple[str, str], float] = collections.defaultdict(float)  # (node, GPU id) -> share
    for name, infos in reports.items():
        share = 1.0 if name == "Transcriber" else SHARE
        for info in infos:
            # On a GPU node, one logical GPU each, the share asked for, computing on the CPU.
            assert info["node_id"] in workers, (name, info["node_id"])
            assert len(info["gpu_ids"]) == 1 and set(info["gpu_ids"]) <= GPU_IDS, (name, info["gpu_ids"])
            assert (info["gpu_share"], info["device"]) == (share, "cpu"), (name, info)
            used[(info["node_id"], info["gpu_ids"][0])] += share

    transcribers = reports["Transcriber"]
    by_node = collections.defaultdict(list)
    for info in transcribers:
        by_node[info["node_id"]].append(info["gpu_ids"][0])
    # Serve spreads replicas: both GPU nodes hold Transcribers, so one holds two (3 replicas).
    assert set(by_node) == workers, by_node
    for node, ids in by_node.items():
        assert len(ids) == len(set(ids)), f"two whole-GPU Transcribers share a GPU on {node}: {ids}"
    # A whole GPU is its Transcriber's alone: no quarter replica on the same node and id.
    for (node, gpu), total in used.items():
        assert total <= 1.0, f"GPU {gpu} of node {node[:8]} is over-committed: {total}"
    whole = {(i["node_id"], i["gpu_ids"][0]) for i in transcribers}
    quarters = {(i["node_id"], i["gpu_ids"][0]) for n in MODEL_DEPLOYMENTS[1:] for i in reports[n]}
    assert not whole & quarters, whole & quarters

    # Ray's own books agree: 3 whole + 3 quarters of the 6 GPUs are taken.
    deadline = time.monotonic() + 30
    while (free := ray.available_resources().get("GPU", 0.0)) != pytest.approx(2 * GPUS_PER_WORKER - 3 - 3 * SHARE):
        assert time.monotonic() < deadline, f"{free} GPUs free"
        time.sleep(0.5)

    # /healthz relays one Transcriber's own report.
    health = service["client"].get("/healthz").json()
    assert health["vad"] == "deployment" and health["device"] == "cpu"
    reported = health["transcriber"]
    assert (reported["node_id"], tuple(reported["gpu_ids"]), reported["gpu_share"]) in {
        (i["node_id"], tuple(i["gpu_ids"]), 1.0) for i in transcribers
    }


# --- b. autoscaling -------------------------------------------------------------------------------


def test_a_burst_scales_transcribers_up_to_max_and_back_down(service, long_audio):
    from benchmarks import launcher

    client = service["client"]
    launcher.redeploy(service_args(service["aligner_dir"], {"autoscaling_config": AUTOSCALING}), PORT)
    # Idle, the three Transcribers the previous test ran go down to the minimum.
    wait_settled({"Ingress": 1, "Transcriber": AUTOSCALING["min_replicas"], "Aligner": 1, "Diarizer": 1, "Vad": 1})
    assert client.get("/healthz").status_code == 200

    stop, responses, peak = threading.Event(), [], [0]
    counts = []

    def load() -> None:
        while not stop.is_set():
            responses.append(_transcribe(client, long_audio))

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        for _ in range(6):
            pool.submit(load)
        try:
            deadline = time.monotonic() + 300
            while peak[0] < AUTOSCALING["max_replicas"]:
                assert time.monotonic() < deadline, f"Transcribers never reached the max: {counts[-10:]}"
                count = running("Transcriber")
                counts.append(count)
                peak[0] = max(peak[0], count)
                time.sleep(1.0)
            scaled_up_s = time.monotonic() - started
            served = len(responses)  # the scaled-up service serves a few requests too
            while len(responses) < served + 3:
                assert time.monotonic() < deadline, "the scaled-up service served nothing"
                time.sleep(0.2)
        finally:
            stop.set()
            stopped = time.monotonic()
    assert len(responses) >= 6
    _ok(responses)
    # Never past the maximum, on nodes with GPUs.
    scheduled = serve_replicas()["Transcriber"]
    assert len(scheduled) <= AUTOSCALING["max_replicas"]
    workers = {node.node_id for node in service["workers"]}
    assert {r["node_id"] for r in scheduled if r["state"] == "RUNNING"} <= workers

    wait_settled({"Transcriber": AUTOSCALING["min_replicas"]}, timeout_s=180)
    print(
        f"scaled 1 -> {peak[0]} in {scaled_up_s:.0f} s of load ({len(responses)} requests), "
        f"back to {AUTOSCALING['min_replicas']} {time.monotonic() - stopped:.0f} s after it stopped "
        "(its last requests finishing included)"
    )


# --- c. node loss (last: it leaves one worker) ---------------------------------------------------


def test_a_worker_node_lost_under_load_fails_no_request(service, long_audio):
    client, cluster = service["client"], service["cluster"]
    before = wait_settled({"Transcriber": None, "Aligner": 1, "Diarizer": 1, "Vad": 1})
    # The worker holding a Transcriber, and of those the one holding the most model replicas.
    on_node = collections.Counter(r["node_id"] for name in MODEL_DEPLOYMENTS for r in before[name])
    victims = {r["node_id"] for r in before["Transcriber"]}
    victim = max(victims, key=lambda node: on_node[node])
    node = next(n for n in service["workers"] if n.node_id == victim)
    lost = {name: {r["pid"] for r in before[name] if r["node_id"] == victim} for name in MODEL_DEPLOYMENTS}
    print("removing", victim[:8], "holding", {k: len(v) for k, v in lost.items()})

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(_transcribe, client, long_audio, True) for _ in range(4)]
        deadline = time.monotonic() + 180
        transcribers = len(before["Transcriber"])
        # Until a Transcriber on the victim decodes a batch itself (not only chunks on their way).
        while not any(
            i["batches_decoding"] and i["node_id"] == victim for i in replica_reports("Transcriber", transcribers)
        ):
            assert time.monotonic() < deadline, "the victim's Transcribers never got work"
            assert not all(f.done() for f in futures), "all requests ended before the node went"
            time.sleep(0.05)
        cluster.remove_node(node)
        removed = time.monotonic()
        responses = [f.result() for f in futures]
    print(f"requests done {time.monotonic() - removed:.0f} s after the node went")

    bodies = _ok(responses)
    assert sum(b["service"]["retries"] for b in bodies) >= 1, "no call was resent: the node held nothing in flight"
    for body in bodies:
        assert body["models"]["align"].startswith("wav2vec2")
        assert {w.get("speaker") for s in body["segments"] for w in s["words"]} - {None}

    # Everything runs again, on the node that is left.
    survivor = next(n.node_id for n in service["workers"] if n.node_id != victim)
    after = wait_settled({"Ingress": 1, "Transcriber": None, "Aligner": 1, "Diarizer": 1, "Vad": 1}, timeout_s=300)
    print(f"settled {time.monotonic() - removed:.0f} s after the node went")
    for name in MODEL_DEPLOYMENTS:
        assert {r["node_id"] for r in after[name]} == {survivor}, (name, after[name])
        reports = replica_reports(name, len(after[name]))
        assert {i["node_id"] for i in reports} == {survivor}
        assert not {i["pid"] for i in reports} & lost[name]
    assert "New Jersey" in _ok([_transcribe(client, long_audio, True)])[0]["text"]
