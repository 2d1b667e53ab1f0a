"""Same results three ways: the library (in-process plan), the service (the plan over
deployment handles, real HTTP on 127.0.0.1) and the batch job (the plan over Ray Data actors)
agree on real speech, with the multilingual Whisper base (so the language is really detected
by the plan's vote) and with diarization on."""

from __future__ import annotations

import shutil

import httpx
import pyarrow.parquet as pq
import pytest

from pipeline.asr import AsrConfig
from pipeline.config import PipelineConfig
from pipeline.plan import Request

# Real speech in three languages through three executors, two of them Ray: minutes, so it runs
# in the slow step (the core run stays near its ~20-minute budget).
pytestmark = pytest.mark.slow

PORT = 18140
MODEL = "bundled/base"
CLIPS = ("test_de.wav", "test_ja.wav", "test_ko.wav")


@pytest.fixture(scope="module")
def clips(speech_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("multilang")
    for name in CLIPS:
        shutil.copy(speech_dir / "multilang" / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def config() -> PipelineConfig:
    return PipelineConfig(asr=AsrConfig(model=MODEL))


@pytest.fixture(scope="module")
def library(config):
    from pipeline.runner import LocalPipeline

    return LocalPipeline(config)


@pytest.fixture(scope="module")
def service():
    from serve import launcher

    # Logical CPUs beyond the two cores, so the batch job's actors fit beside the service.
    base = launcher.start({"asr_model": MODEL}, port=PORT, num_cpus=5)
    yield base
    launcher.stop()


def post(base: str, path, **fields) -> dict:
    with open(path, "rb") as f:
        response = httpx.post(f"{base}/v1/transcribe", files={"file": (path.name, f)}, data=fields, timeout=600)
    assert response.status_code == 200, response.text
    return response.json()


def batch_rows(folder, output, config: PipelineConfig, request: Request) -> dict[str, dict]:
    from cluster.batch import RunOptions, run_batch

    summary = run_batch(str(folder), str(output), config, request, RunOptions(progress=False))
    assert summary.failures == 0
    return {row["path"].rsplit("/", 1)[-1]: row for row in pq.read_table(str(output)).to_pylist()}


def words_and_speakers(segments: list[dict]) -> list[tuple[str, str | None]]:
    return [(w["word"], w.get("speaker")) for s in segments for w in s["words"]]


def test_language_detection_and_text(library, service, clips, config, tmp_path):
    rows = batch_rows(clips, tmp_path / "out", config, Request())
    for name in CLIPS:
        expected_language = name.removeprefix("test_").removesuffix(".wav")
        mine = library.transcribe(clips / name)
        served = post(service, clips / name)
        assert mine.language == served["language"] == rows[name]["language"] == expected_language, name
        assert served["text"] == mine.text == rows[name]["text"], name
        assert served["models"] == mine.models and rows[name]["asr_model"] == mine.models["asr"] == MODEL
        assert "language" in served["service"]["stages"]


def test_diarization(library, service, pyannote_sample, config, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(pyannote_sample, folder / "sample.wav")
    mine = library.transcribe(pyannote_sample, Request(diarize=True)).to_dict()
    served = post(service, pyannote_sample, diarize="true")
    row = batch_rows(folder, tmp_path / "out", config, Request(diarize=True))["sample.wav"]
    import json

    expected = words_and_speakers(mine["segments"])
    assert len({speaker for _, speaker in expected}) == 2
    assert words_and_speakers(served["segments"]) == expected
    assert words_and_speakers(json.loads(row["segments_json"])) == expected
    assert served["models"]["diarize"] == mine["models"]["diarize"] == row["diarize_model"]
    assert served["speaker_turns"] == mine["speaker_turns"] == row["speaker_turns"]
