"""Shared fixtures: the real pipeline with the bundled models, real speech, and the session's
one Ray cluster and Serve app (tests/session.py; tests/README.md says how the suite is laid out).

Core tests use speech every install has: pyannote-audio's bundled sample.wav (with its STM
reference) and espeak-ng speech of known text. Tests over ../shared/data/speech skip when
that folder is absent (a user's fresh clone), saying so.

Models load once per run: one `LocalPipeline` per configuration (`pipeline.runner.shared_pipeline`,
which the CLI's in-process `main` uses too), one diarizer of each method.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.session import AppSpec, Service, Services, stop_ray

REPO = Path(__file__).resolve().parent.parent
SPEECH_DIR = Path(os.environ.get("WXS_SPEECH_DIR", REPO.parent / "shared" / "data" / "speech"))

# The README's config.yaml as it is (tests/session.py adds a port, an API key, a cache folder).
DEFAULT_APP = AppSpec("config.yaml")

# Collection order: tests that need no Ray first, then those on the session's cluster, then
# each Serve app's tests together (so each deploys once), tests that kill a shared component
# (`kills` marker) after the others on their app, and the modules with a cluster of their own last.
PHASES = (  # (fixture a test uses, phase)
    ("own_ray_cluster", 6),
    ("full_service", 4),
    ("service", 2),
    ("ray_cluster", 1),
)


def pytest_configure(config):
    # Registered here, not in pyproject.toml: setup.sh rebuilds the environment when that file changes.
    config.addinivalue_line(
        "markers", "kills: stops a shared component (a replica, the cache actor); runs last on its app"
    )
    config.addinivalue_line("markers", "soak: the soak (slow); WXS_SOAK_S=600 ./test.sh -m soak for the 10-minute one")


def pytest_collection_modifyitems(config, items):
    def phase(item) -> tuple[int, int]:
        names = set(item.fixturenames)
        base = next((n for fixture, n in PHASES if fixture in names), 0)
        return base, 1 if item.get_closest_marker("kills") else 0

    items.sort(key=phase)  # stable: file order within a phase


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
    """speak(text, rate=150, voice=None) -> path of a wav of espeak-ng saying `text`, made once
    per (text, rate, voice) in the run."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is missing: run ./setup.sh --dev (it installs it)")
    folder = tmp_path_factory.mktemp("espeak")
    made: dict[tuple, Path] = {}

    def _speak(text: str, rate: int = 150, voice: str | None = None) -> Path:
        key = (text, rate, voice)
        if key not in made:
            out = folder / f"speech{len(made) + 1}.wav"
            subprocess.run(
                ["espeak-ng", *(["-v", voice] if voice else []), "-s", str(rate), "-w", str(out), text], check=True
            )
            made[key] = out
        return made[key]

    return _speak


@pytest.fixture(scope="session")
def local_pipeline():
    """The library with PipelineConfig's defaults: tiny.en alone (the English model of the cpu
    profile's pair; the profile's pair itself: tests/test_equality.py)."""
    from pipeline.runner import shared_pipeline

    return shared_pipeline()


@pytest.fixture(scope="session")
def base_pipeline():
    """The library with the offline multilingual Whisper base."""
    from pipeline import bundled

    if not bundled.installed("base"):
        pytest.skip(f"multilingual base is not installed: {bundled.install_hint('base')}")
    from pipeline.asr import AsrConfig
    from pipeline.config import PipelineConfig
    from pipeline.runner import shared_pipeline

    return shared_pipeline(PipelineConfig(asr=AsrConfig(model="bundled/base")))


@pytest.fixture(scope="session")
def diarizer(local_pipeline):
    """The default offline diarizer (segmentation method), the pipeline's own."""
    return local_pipeline.diarizer


@pytest.fixture(scope="session")
def windows_diarizer():
    from pipeline.diarize import DiarizeConfig, Diarizer

    return Diarizer(DiarizeConfig(method="windows"))


@pytest.fixture(scope="session")
def tiny_wav2vec2(tmp_path_factory) -> Path:
    """A tiny random-weight wav2vec2 CTC model directory (no CTC model can be had offline)."""
    from tests.test_align import build_wav2vec2

    return build_wav2vec2(tmp_path_factory.mktemp("w2v") / "tiny")


@pytest.fixture(scope="session")
def bomb_flac(tmp_path_factory) -> Path:
    """5 h of silence in a ~3 MB FLAC: over the 4 h default limit, refused from its header."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.flac"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "18000", str(path))
    return path


# --- Ray and Serve -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def services(tmp_path_factory):
    apps = Services(tmp_path_factory.mktemp("result-cache"))
    yield apps
    apps.close()
    stop_ray()


@pytest.fixture(scope="session")
def ray_cluster(services):
    """The run's one local Ray cluster (127.0.0.1), shared by Serve and the batch jobs."""
    from tests.session import start_ray

    start_ray()


@pytest.fixture
def service(services) -> Service:
    """config.yaml's app, shared by every service test; any `tune` is undone before the next test."""
    return services.use(DEFAULT_APP)


@pytest.fixture
def client(service):
    """An httpx client on the shared app with the API key. Send `Cache-Control: no-cache`
    where a request must compute rather than be answered from the result cache."""
    return service.client


@pytest.fixture
def full_service(services, tiny_wav2vec2) -> Service:
    """config.yaml with the VAD in its own deployment (the gpu profile's placement) and a
    wav2vec2 Aligner: every model deployment there is, for the tests that kill each kind."""
    spec = AppSpec(
        "vad-deployment+aligner",
        {"vad_placement": "deployment", "align_model": str(tiny_wav2vec2), "max_queue_wait_s": 3600},
    )
    return services.use(spec)


@pytest.fixture(scope="module")
def own_ray_cluster(services):
    """For a module that builds clusters of its own: the session's goes first (it runs last)."""
    services.close()
    stop_ray()


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)
