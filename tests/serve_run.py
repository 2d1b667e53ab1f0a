"""`serve run config.yaml` as a user types it, for the tests that start it (the `serve` CLI of
some environment): started in its own session, polled until /healthz answers 200, stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
URL = "http://127.0.0.1:8000"  # config.yaml's http_options


@contextlib.contextmanager
def serve_run(serve_cli: Path, log_path: Path, timeout_s: float = 300):
    """Yield the running `serve run config.yaml` once healthy; its own Ray (RAY_ADDRESS=local,
    never the test run's cluster), offline, with no API key."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WXS_API_KEY": "", "RAY_ADDRESS": "local"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(serve_cli), "run", "config.yaml"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                if httpx.get(f"{URL}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not healthy in {timeout_s} s:\n" + log_path.read_text()[-3000:]
            time.sleep(1)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
