"""Ray Data batch jobs on a real local Ray cluster over ../shared/data/speech: every file
exactly once with the library's text, error rows for bad files, resume after a stop and after
a kill without redoing finished files, manifests, and the documented Parquet schemas."""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cluster.batch import RunOptions, run_batch
from cluster.schema import FILE_SCHEMA, SEGMENT_SCHEMA
from pipeline.config import PipelineConfig
from pipeline.plan import Request
from pipeline.settings import PipelineSettings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = Path(sys.executable).parent / "whisperx-serve"
FILES = 9  # in the corpus
BAD = ("broken.wav", "bomb.flac")


@pytest.fixture(scope="module")
def corpus(speech_dir, bomb_flac, tmp_path_factory):
    """7 real recordings (one 44.1 kHz stereo flac), a corrupt file and a decompression bomb,
    in nested folders: FILES audio files in all."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "books").mkdir()
    for path in sorted((speech_dir / "librispeech").glob("*.wav"))[:6]:
        shutil.copy(path, root / "books" / path.name)
    shutil.copy(speech_dir / "jfk.flac", root / "jfk.flac")
    (root / "broken.wav").write_bytes(np.random.default_rng(3).bytes(3000))
    shutil.copy(bomb_flac, root / "bomb.flac")
    (root / "notes.txt").write_text("not audio")
    return root


def quiet(**kwargs) -> RunOptions:
    return RunOptions(progress=False, **kwargs)


def read(output) -> pa.Table:
    return pq.read_table(str(output))


def test_every_file_once_with_the_library_text(ray_cluster, corpus, local_pipeline, tmp_path):
    summary = run_batch(str(corpus), str(tmp_path / "out"), PipelineConfig(), Request(), quiet())
    table = read(tmp_path / "out")
    for part in (tmp_path / "out").glob("part-*.parquet"):
        assert pq.read_schema(part).remove_metadata().equals(FILE_SCHEMA)
    rows = {r["path"]: r for r in table.to_pylist()}
    audio = sorted(str(p) for p in corpus.rglob("*") if p.suffix in (".wav", ".flac"))
    assert sorted(rows) == audio and table.num_rows == len(audio) == FILES
    assert rows[str(corpus / "broken.wav")]["error_code"] == "audio_undecodable"
    assert rows[str(corpus / "broken.wav")]["text"] is None
    # 5 h of silence in a 3 MB FLAC, over the 4 h default limit: refused from its header
    # (nothing decoded), an error row beside the good files' transcripts.
    bomb = rows[str(corpus / "bomb.flac")]
    assert bomb["error_code"] == "audio_too_long" and "from its header" in bomb["error"]
    for path in audio:
        if path.endswith(BAD):
            continue
        row = rows[path]
        assert row["error_code"] is None, row["error"]
        expected = local_pipeline.transcribe(path)
        assert row["text"] == expected.text, path
        assert row["duration_s"] == pytest.approx(expected.duration, abs=0.01)
        assert row["language"] == "en" and row["asr_model"] == "bundled/tiny.en"
        assert row["num_words"] == len(expected.words)
        assert row["speaker_turns"] is None, "not diarized"
    assert (summary.files_done, summary.failures, summary.files_skipped) == (FILES, len(BAD), 0)
    assert summary.audio_seconds == pytest.approx(sum(r["duration_s"] or 0 for r in rows.values()), abs=0.01)


@pytest.mark.slow
def test_a_manifest_diarized_per_segment(ray_cluster, speech_dir, pyannote_sample, tmp_path):
    """A CSV manifest (a relative and an absolute path), diarized, one row per segment, in the
    documented segment schema (listing manifests and building rows: tests/unit)."""
    folder = tmp_path / "listed"
    folder.mkdir()
    shutil.copy(pyannote_sample, folder / "call.wav")
    jfk = speech_dir / "jfk.flac"
    (folder / "manifest.csv").write_text(f"path\ncall.wav\n{jfk}\n")
    run_batch(
        str(folder / "manifest.csv"),
        str(tmp_path / "segments"),
        PipelineConfig(),
        Request(diarize=True),
        quiet(),
        per_segment=True,
    )
    parts = sorted((tmp_path / "segments").glob("part-*.parquet"))
    assert parts and all(pq.read_schema(p).remove_metadata().equals(SEGMENT_SCHEMA) for p in parts)
    rows = read(tmp_path / "segments").to_pylist()
    assert {r["path"] for r in rows} == {str(folder / "call.wav"), str(jfk)}
    call = [r for r in rows if r["path"].endswith("call.wav")]
    assert len(call) > 5 and sorted(s["segment_index"] for s in call) == list(range(len(call)))
    assert {s["speaker"] for s in call} == {"SPEAKER_00", "SPEAKER_01"}
    assert all(s["start_s"] <= s["end_s"] for s in rows)
    assert "New Jersey" in " ".join(s["text"] for s in sorted(call, key=lambda s: s["segment_index"]))
    said = " ".join(s["text"] for s in rows if s["path"] == str(jfk)).lower()
    assert "ask not what your country" in said


@pytest.mark.slow
def test_stopped_then_killed_job_resumes_and_redoes_nothing(ray_cluster, corpus, tmp_path):
    """A job stopped after 3 files (--max-files), then run again as a user types it and killed
    (SIGKILL, no cleanup) once it wrote more, then resumed to the end: every file once, none
    redone; a run after that finds nothing to do."""
    out = tmp_path / "out"
    # The models `whisperx-serve batch` loads by default (the cpu profile's pair): the same
    # options, so the same row keys, as the command below.
    config = PipelineSettings().pipeline_config()
    first = run_batch(str(corpus), str(out), config, Request(), quiet(max_files=3, files_per_batch=1))
    assert first.files_done == 3 and read(out).num_rows == 3

    parts = len(list(out.glob("part-*.parquet")))
    log = open(tmp_path / "job.log", "wb")
    job = subprocess.Popen(
        # as a user types it: the installed command
        [str(CLI), "batch", str(corpus), str(out), "--files-per-batch", "1", "--no-progress"],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    # Killed at its first new file: Ray Data may write the next few in a burst, and the job
    # must still have work left when it dies.
    while len(list(out.glob("part-*.parquet"))) < parts + 1:
        assert job.poll() is None, (tmp_path / "job.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "the job wrote nothing in 240 s"
        time.sleep(0.02)
    os.killpg(job.pid, signal.SIGKILL)  # no cleanup, no goodbye
    job.wait()
    # Its Ray workers (process groups of their own) live on for a few seconds and may still
    # land a batch while the rerun below works: the rerun must not leave it twice.
    before = read(out)
    survivors = dict(zip(before.column("path").to_pylist(), before.column("run_id").to_pylist()))
    assert 3 + 1 <= len(survivors) < FILES, f"the killed job wrote {len(survivors) - 3} of {FILES - 3} files"
    assert collections.Counter(survivors.values())[first.run_id] == 3
    # One such late landing made certain: a second copy of a batch the killed job wrote.
    landed = next(p for p in sorted(out.glob("part-*.parquet")) if first.run_id not in p.name)
    shutil.copy(landed, out / f"part-late-{landed.stem}.parquet")

    resumed = run_batch(str(corpus), str(out), config, Request(), quiet())
    after = read(out)
    paths = after.column("path").to_pylist()
    assert len(paths) == len(set(paths)) == FILES, "a file is missing or was written twice"
    for path, run_id in zip(paths, after.column("run_id").to_pylist()):
        assert run_id == survivors.get(path, resumed.run_id)  # finished files were not redone
    assert resumed.files_done == FILES - len(survivors) and resumed.files_skipped == len(survivors)
    again = run_batch(str(corpus), str(out), config, Request(), quiet())
    assert again.files_done == 0 and again.files_skipped == FILES and read(out).num_rows == FILES
