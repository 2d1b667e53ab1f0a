"""Ray's own commands as the README gives them (section "Ray's own commands"), typed as a user
types them, against a cluster started by `ray start --head` on 127.0.0.1 with Ray's token
authentication on:

- `serve deploy config.yaml`, a transcription over HTTP, `serve status` with every deployment
  healthy, an edited config redeployed while a request is in flight (the request completes, the
  new user_config comes into force, no replica restarts), `serve shutdown`;
- `ray job submit` of the batch job with one of its ASR actors killed mid-job: the actor
  restarts, the job writes every file once with the library's text, `ray job logs` shows the
  summary line, and Ray no longer warns that an actor's constructor arguments are in the object
  store (cluster/restartable.py).

The commands run as subprocesses with the environment the README says to export
(RAY_AUTH_MODE=token); a command without it is refused by the cluster, which shows auth is on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import ffmpeg

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("own_ray_cluster")]  # Ray's default ports: alone

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # ray, serve and python of this environment, as a user's PATH has them
BASE = "http://127.0.0.1:8000"  # config.yaml's http_options
APP = "whisperx"
JOB_FILES = 16


def run(env: dict, *command: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        said = done.stdout[-3000:] + done.stderr[-3000:]
        assert done.returncode == 0, f"{' '.join(command)} -> {done.returncode}\n{said}"
    return done


def wait_for(condition, what: str, timeout: float = 300, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(every)
    return value


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """`ray start --head` as the README gives it, with RAY_AUTH_MODE=token exported; stopped after."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "token"}
    env.update(HF_HUB_OFFLINE="1", WXS_API_KEY="")  # offline models; no API key on this app
    env.pop("RAY_ADDRESS", None)  # the CLIs find the local cluster and its dashboard themselves
    run(env, "ray", "get-auth-token", "--generate")  # a no-op where ~/.ray/auth_token exists
    run(env, "ray", "start", "--head", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1", timeout=120)
    try:
        yield env
    finally:
        run(env, "serve", "shutdown", "-y", check=False, timeout=60)
        run(env, "ray", "stop", "--force", check=False, timeout=120)


def serve_status(env: dict) -> dict:
    return yaml.safe_load(run(env, "serve", "status").stdout)


def every_deployment_healthy(env: dict) -> dict | None:
    app = (serve_status(env).get("applications") or {}).get(APP)
    if not app or app["status"] != "RUNNING":
        return None
    deployments = app["deployments"]
    return deployments if all(d["status"] == "HEALTHY" for d in deployments.values()) else None


def actors(env: dict, field: str, value: str) -> list[dict]:
    """`ray list actors` whose `field` is `value`, with details (pid, state, num_restarts)."""
    listed = run(env, "ray", "list", "actors", "--detail", "--format", "json", "--filter", f"{field}={value}")
    return json.loads(listed.stdout)


def alive_actors(env: dict, class_name: str) -> list[dict]:
    return [a for a in actors(env, "class_name", class_name) if a["state"] == "ALIVE"]


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_deploy_status_redeploy_and_shutdown(head, pyannote_sample, tmp_path):
    env = head
    # Without the variable Ray's CLI sends no token, and the cluster refuses it: auth is on.
    unauthenticated = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
    refused = run(unauthenticated, "serve", "status", check=False)
    assert refused.returncode != 0 and "Authentication" in refused.stdout + refused.stderr

    run(env, "serve", "deploy", "config.yaml")
    wait_for(lambda: healthy(f"{BASE}/healthz"), "healthy after serve deploy")
    with open(pyannote_sample, "rb") as f:
        answer = httpx.post(f"{BASE}/v1/audio/transcriptions", files={"file": f}, timeout=300)
    assert answer.status_code == 200, answer.text
    assert "New Jersey" in answer.json()["text"]
    deployments = wait_for(lambda: every_deployment_healthy(env), "every deployment HEALTHY in serve status")
    assert set(deployments) == {"Ingress", "Transcriber", "Diarizer"}  # the cpu profile's

    # An edited config redeployed while a 10-minute recording is being transcribed.
    long_file = tmp_path / "ten-minutes.wav"
    ffmpeg("-stream_loop", "19", "-i", str(pyannote_sample), "-ar", "16000", "-ac", "1", str(long_file))
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    transcriber = next(d for d in config["applications"][0]["deployments"] if d["name"] == "Transcriber")
    before = transcriber["user_config"]["max_batch_size"]
    transcriber["user_config"]["max_batch_size"] = before + 1
    edited = tmp_path / "config.yaml"
    edited.write_text(yaml.safe_dump(config, sort_keys=False))
    replicas = {a["actor_id"] for a in alive_actors(env, f"ServeReplica:{APP}:Transcriber")}
    assert len(replicas) == 1

    def transcribe_long() -> tuple[httpx.Response, float]:
        with open(long_file, "rb") as f:
            response = httpx.post(
                f"{BASE}/v1/audio/transcriptions",
                files={"file": f},
                data={"language": "en"},
                headers={"Cache-Control": "no-cache"},
                timeout=600,
            )
        return response, time.monotonic()

    def health() -> dict:
        return httpx.get(f"{BASE}/healthz", timeout=5).json()

    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(transcribe_long)
        wait_for(lambda: health()["chunks_in_flight"] > 0 or in_flight.done(), "the long request started")
        assert not in_flight.done(), in_flight.result()[0].text
        run(env, "serve", "deploy", str(edited))
        wait_for(lambda: health()["transcriber"]["max_batch_size"] == before + 1, "the edited user_config in force")
        in_force_at = time.monotonic()
        response, answered_at = in_flight.result()
    assert response.status_code == 200, response.text
    assert response.json()["text"].count("New Jersey") >= 10, "the whole recording, not part of it"
    assert in_force_at < answered_at, "the redeploy landed while the request was in flight"
    assert {a["actor_id"] for a in alive_actors(env, f"ServeReplica:{APP}:Transcriber")} == replicas, "reconfigured"
    wait_for(lambda: every_deployment_healthy(env), "every deployment HEALTHY after the redeploy")

    run(env, "serve", "shutdown", "-y")
    wait_for(lambda: not serve_status(env).get("applications"), "no application after serve shutdown")
    wait_for(lambda: not healthy(f"{BASE}/healthz"), "the service gone after serve shutdown")


def test_ray_job_submit_survives_a_killed_actor(head, speech_dir, local_pipeline, tmp_path):
    env = head
    inputs, output = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for path in sorted((speech_dir / "librispeech").glob("*.wav"))[:JOB_FILES]:
        shutil.copy(path, inputs / path.name)
    # Two files a batch: the job writes parts as it goes, and is still busy when one lands.
    submitted = run(
        env,
        *("ray", "job", "submit", "--no-wait", "--working-dir", ".", "--"),
        *("python", "-m", "cluster.batch", str(inputs), str(output), "--files-per-batch", "2"),
    )
    job = re.search(r"raysubmit_\w+", submitted.stdout + submitted.stderr).group(0)

    def status() -> str | None:
        said = run(env, "ray", "job", "status", job)
        found = re.search(r"Job '\w+' (succeeded|failed|was stopped)", said.stdout + said.stderr)
        return found.group(1) if found else None

    wait_for(lambda: list(output.glob("part-*.parquet")) or status(), "the job's first Parquet part")
    assert status() is None, "the job ended before an actor could be killed"
    (victim,) = alive_actors(env, "MapWorker(MapBatches(Transcribe))")
    os.kill(victim["pid"], signal.SIGKILL)  # a crash, not a polite stop: Ray restarts the actor

    assert wait_for(status, "the job's end", timeout=600, every=1) == "succeeded"
    logs = run(env, "ray", "job", "logs", job).stdout
    assert f"{JOB_FILES} files transcribed (0 failed), 0 already done of {JOB_FILES} listed" in logs
    assert "constructor arguments in the object store" not in logs
    (restarted,) = actors(env, "actor_id", victim["actor_id"])
    assert restarted["num_restarts"] >= 1, "the killed actor was restarted"

    rows = pq.read_table(str(output)).to_pylist()
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in inputs.iterdir()), "every file exactly once"
    for row in rows:
        assert row["error_code"] is None, row["error"]
        assert row["text"] == local_pipeline.transcribe(row["path"]).text, row["path"]
