"""Same results three ways: the library (in-process plan), the service (the plan over
deployment handles, real HTTP on 127.0.0.1) and the batch job (the plan over Ray Data actors)
agree on real speech, with the cpu profile's models (the multilingual Whisper base identifies the
language by the plan's vote, and English goes to tiny.en) and with diarization on."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from pipeline.config import PipelineConfig
from pipeline.plan import Request
from pipeline.settings import PipelineSettings

# Real speech in three languages through three executors, two of them Ray: minutes, so it runs
# in the slow step (the core run stays near its ~20-minute budget).
pytestmark = pytest.mark.slow

CLIPS = ("test_de.wav", "test_ja.wav", "test_ko.wav")
# The model the routing rule picks: base for the three languages, tiny.en for the English call.
ROUTED = {"sample.wav": "bundled/tiny.en"}


@pytest.fixture(scope="module")
def clips(speech_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("multilang")
    for name in CLIPS:
        shutil.copy(speech_dir / "multilang" / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def config() -> PipelineConfig:
    """config.yaml's models (the cpu profile's), as the CLI loads them too."""
    from pipeline import bundled

    if not bundled.installed("base"):
        pytest.skip(f"multilingual base is not installed: {bundled.install_hint('base')}")
    return PipelineSettings().pipeline_config()


@pytest.fixture
def library(config):
    from pipeline.runner import shared_pipeline

    return shared_pipeline(config)


def post(service, path, **fields) -> dict:
    with open(path, "rb") as f:
        response = service.client.post(
            "/v1/transcribe", files={"file": (path.name, f)}, data=fields, headers={"Cache-Control": "no-cache"}
        )
    assert response.status_code == 200, response.text
    return response.json()


def batch_rows(folder, output, config: PipelineConfig, request: Request) -> dict[str, dict]:
    from cluster.batch import RunOptions, run_batch

    summary = run_batch(str(folder), str(output), config, request, RunOptions(progress=False))
    assert summary.failures == 0
    return {row["path"].rsplit("/", 1)[-1]: row for row in pq.read_table(str(output)).to_pylist()}


def words_and_speakers(segments: list[dict]) -> list[tuple[str, str | None]]:
    return [(w["word"], w.get("speaker")) for s in segments for w in s["words"]]


def test_language_text_words_and_speakers(library, service, ray_cluster, clips, pyannote_sample, config, tmp_path):
    """One diarized batch run over the three clips and the two-speaker call: the language each
    executor detects, its text, its words with their speakers and the speaker turns agree."""
    shutil.copy(pyannote_sample, clips / "sample.wav")
    request = Request(diarize=True)
    rows = batch_rows(clips, tmp_path / "out", config, request)
    for name in (*CLIPS, "sample.wav"):
        mine = library.transcribe(clips / name, request).to_dict()
        served = post(service, clips / name, diarize="true")
        row = rows[name]
        if name != "sample.wav":
            expected_language = name.removeprefix("test_").removesuffix(".wav")
            assert mine["language"] == served["language"] == row["language"] == expected_language, name
            assert "language" in served["service"]["stages"]
        else:
            assert len({speaker for _, speaker in words_and_speakers(mine["segments"])}) == 2
        assert served["text"] == mine["text"] == row["text"], name
        routed = ROUTED.get(name, "bundled/base")
        assert served["models"] == mine["models"] and row["asr_model"] == mine["models"]["asr"] == routed, name
        expected = words_and_speakers(mine["segments"])
        assert words_and_speakers(served["segments"]) == expected, name
        assert words_and_speakers(json.loads(row["segments_json"])) == expected, name
        assert served["models"]["diarize"] == mine["models"]["diarize"] == row["diarize_model"]
        assert served["speaker_turns"] == mine["speaker_turns"] == row["speaker_turns"], name
