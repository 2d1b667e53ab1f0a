"""Shared fixtures: the real pipeline with the bundled models, and real speech.

Core tests use speech every install has: pyannote-audio's bundled sample.wav (with its STM
reference) and espeak-ng speech of known text. Tests over ../shared/data/speech skip when
that folder is absent (a user's fresh clone), saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SPEECH_DIR = Path(os.environ.get("WXS_SPEECH_DIR", REPO.parent / "shared" / "data" / "speech"))


@pytest.fixture(scope="session")
def speech_dir() -> Path:
    if not (SPEECH_DIR / "references.tsv").is_file():
        pytest.skip(f"real-speech suite needs {SPEECH_DIR} (shared/data/speech beside the repo); not present")
    return SPEECH_DIR


@pytest.fixture(scope="session")
def pyannote_sample() -> Path:
    """30 s, 2-speaker telephone call shipped inside the pyannote-audio wheel."""
    import pyannote.audio

    path = Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"
    assert path.is_file(), "pyannote-audio's wheel should ship sample/sample.wav"
    return path


def stm_text(path: Path) -> str:
    """Reference words of an STM file, in time order."""
    rows = [line.split(maxsplit=5) for line in path.read_text().splitlines() if line.strip()]
    rows.sort(key=lambda r: float(r[3]))
    return " ".join(r[5] for r in rows if len(r) > 5)


@pytest.fixture(scope="session")
def speak(tmp_path_factory):
    """speak(text) -> path of a 16 kHz wav of espeak-ng saying `text`."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is missing: run ./setup.sh --dev (it installs it)")
    folder = tmp_path_factory.mktemp("espeak")
    count = [0]

    def _speak(text: str, rate: int = 150) -> Path:
        count[0] += 1
        out = folder / f"speech{count[0]}.wav"
        subprocess.run(["espeak-ng", "-s", str(rate), "-w", str(out), text], check=True)
        return out

    return _speak


@pytest.fixture(scope="session")
def local_pipeline():
    from pipeline.runner import LocalPipeline

    return LocalPipeline()


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)
