"""The README's command: `serve run config.yaml` starts the service on 127.0.0.1:8000 with the
embedded defaults, offline, and it answers a transcription."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
import yaml

from tests.serve_run import serve_run

REPO = Path(__file__).resolve().parent.parent
# The README's command as a user types it: the `serve` CLI starts its own Ray and Serve (under a
# minute here; tests/serve_run.py). In the core suite, before the session's cluster starts (conftest.py's phases).


def test_serve_run_config_yaml(pyannote_sample, tmp_path):
    with serve_run(Path(sys.executable).parent / "serve", tmp_path / "serve.log"):
        # Healthy before the Diarizer has loaded (it loads after the Transcriber on a CPU
        # machine): a diarized request sent at once waits for it rather than failing.
        with open(pyannote_sample, "rb") as f:
            diarized = httpx.post(
                "http://127.0.0.1:8000/v1/transcribe", files={"file": f}, data={"diarize": "true"}, timeout=300
            )
        assert diarized.status_code == 200, diarized.text
        assert {s.get("speaker") for s in diarized.json()["segments"]} >= {"SPEAKER_00", "SPEAKER_01"}
        with open(pyannote_sample, "rb") as f:
            response = httpx.post("http://127.0.0.1:8000/v1/audio/transcriptions", files={"file": f}, timeout=300)
        assert response.status_code == 200, response.text
        assert "New Jersey" in response.json()["text"]
        assert response.headers["x-whisperx-model"] == "bundled/tiny.en"  # English: the fast model
        health = httpx.get("http://127.0.0.1:8000/healthz").json()
        assert health["transcriber"]["models"] == ["bundled/base", "bundled/tiny.en"] and health["device"] == "cpu"
        # The Diarizer has loaded (it answered); replica states are polled every 5 s.
        deadline = time.monotonic() + 30
        while health["loading"]:
            assert time.monotonic() < deadline, health
            time.sleep(0.5)
            health = httpx.get("http://127.0.0.1:8000/healthz").json()
        configured = yaml.safe_load((REPO / "config.yaml").read_text())["applications"][0]["deployments"][0]
        assert health["transcriber"]["max_batch_size"] == configured["user_config"]["max_batch_size"]
        assert _listeners(8000) == {"127.0.0.1"}, "the HTTP port must listen on loopback only"
        # config.yaml's controller_options reach the controller and, through it, the proxy and
        # the replicas (Serve's idle loops at the intervals it sets).
        wanted = yaml.safe_load((REPO / "config.yaml").read_text())["controller_options"]["runtime_env"]["env_vars"]
        for process in (b"ray::ServeController", b"ray::ProxyActor", b"ray::ServeReplica:whisperx:Transcriber"):
            environ = _environ_of(process)
            assert {k: environ.get(k) for k in wanted} == wanted, process


def _environ_of(cmdline_prefix: bytes) -> dict[str, str]:
    """The environment of the one process on this machine whose command line starts so."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if not f.read().startswith(cmdline_prefix):
                    continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                found.append(dict(v.decode().split("=", 1) for v in f.read().split(b"\0") if b"=" in v))
        except OSError:
            continue
    assert len(found) == 1, f"{len(found)} processes named {cmdline_prefix!r}"
    return found[0]


def _listeners(port: int) -> set[str]:
    """Addresses with a socket listening on `port` (IPv4 and IPv6), from /proc/net."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                if width == 8:
                    found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
                else:
                    found.add("::1" if address == "0" * 24 + "01000000" else address)
    return found
