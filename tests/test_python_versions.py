"""A second supported Python (README, "Python 3.11, 3.12 and 3.13"): `WXS_PYTHON=python3.12
./setup.sh` builds an environment from requirements.lock in which the unit tests pass, the CLI
transcribes jfk.flac and `serve run config.yaml` answers a transcription.

The environment lives outside the clone (WXS_SECOND_VENV, default
~/.cache/whisperx-serve/venv-py3.X), as CI's main one does: setup.sh rebuilds it from scratch
whenever requirements.lock, pyproject.toml or the Python change (its stamp), and reuses it
otherwise, which keeps CI's slow step within its budget (a build downloads ~8 GB).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.serve_run import URL, serve_run

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
VERSION = os.environ.get("WXS_SECOND_PYTHON", "3.12")


def _python_available(version: str) -> bool:
    """setup.sh's own search for WXS_PYTHON (PATH, then pyenv's versions)."""
    runs = shutil.which(f"python{version}") and subprocess.run([f"python{version}", "-c", ""], capture_output=True)
    if runs and runs.returncode == 0:
        return True
    pyenv = shutil.which("pyenv")
    if not pyenv:
        return False
    root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
    return any(Path(root, "versions").glob(f"{version}.*/bin/python{version}"))


@pytest.fixture(scope="module")
def second_venv() -> Path:
    if not _python_available(VERSION):
        pytest.skip(f"no Python {VERSION} on this machine (WXS_SECOND_PYTHON picks another)")
    default = Path.home() / ".cache" / "whisperx-serve" / f"venv-py{VERSION}"
    venv = Path(os.environ.get("WXS_SECOND_VENV", default))
    env = {**os.environ, "WXS_PYTHON": f"python{VERSION}", "WXS_VENV": str(venv)}
    started = time.monotonic()
    done = subprocess.run(["./setup.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"Python {VERSION}:" in done.stderr, "setup.sh says which Python it took"
    print(f"setup.sh on Python {VERSION}: {time.monotonic() - started:.0f} s")
    version = subprocess.run([venv / "bin" / "python", "-V"], capture_output=True, text=True).stdout
    assert version.startswith(f"Python {VERSION}."), version
    return venv


def test_unit_tests_pass(second_venv):
    done = subprocess.run(
        [second_venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1]


def test_cli_transcribes(second_venv, speech_dir):
    done = subprocess.run(
        [second_venv / "bin" / "whisperx-serve", "transcribe", str(speech_dir / "jfk.flac"), "--output-format", "text"],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ask not what your country can do for you" in done.stdout


def test_serve_run_answers(second_venv, pyannote_sample, tmp_path):
    with serve_run(second_venv / "bin" / "serve", tmp_path / "serve.log"):
        with open(pyannote_sample, "rb") as f:
            answer = httpx.post(f"{URL}/v1/audio/transcriptions", files={"file": f}, timeout=300)
        assert answer.status_code == 200, answer.text
        assert "New Jersey" in answer.json()["text"]
