"""`whisperx-serve transcribe` as a user runs it: a real subprocess, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli", "transcribe", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


def test_one_file_prints_json(pyannote_sample):
    proc = run_cli(str(pyannote_sample))
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert "New Jersey" in body["text"]
    assert body["word_segments"] and body["models"]["asr"] == "bundled/tiny.en"


def test_many_files_with_a_bad_one(pyannote_sample, speak, tmp_path):
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(np.random.default_rng(2).bytes(1000))
    fox = speak("The quick brown fox jumps over the lazy dog.")
    out = tmp_path / "out"
    proc = run_cli(str(pyannote_sample), str(bad), str(fox), "--output-dir", str(out), "--output-format", "srt")
    assert proc.returncode == 1
    assert "broken.mp3" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{fox.stem}.srt", "sample.srt"])
    assert "lazy dog" in (out / f"{fox.stem}.srt").read_text()


def test_bad_language_is_a_clear_error(pyannote_sample):
    proc = run_cli(str(pyannote_sample), "--language", "de")
    assert proc.returncode == 2
    assert "not supported" in proc.stderr and "Traceback" not in proc.stderr


def test_diarize_prints_speaker_labelled_words(pyannote_sample):
    proc = run_cli(str(pyannote_sample), "--diarize")
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["models"]["diarize"] == "whisperx-segmentation+resemblyzer"
    assert len({w["speaker"] for w in body["word_segments"]}) == 2
    assert all({"start", "end", "speaker"} <= w.keys() for w in body["word_segments"])
    vtt = run_cli(str(pyannote_sample), "--diarize", "--num-speakers", "2", "--output-format", "vtt")
    assert "[SPEAKER_00]: " in vtt.stdout and "[SPEAKER_01]: " in vtt.stdout


def test_rttm_output_is_the_speaker_turns(pyannote_sample, tmp_path):
    """`--output-format rttm` diarizes without --diarize and writes <stem>.rttm: one valid
    RTTM line per turn, named after the input, readable by pyannote, close to the reference."""
    from pipeline.evaluation import diarization_error_rate, read_rttm
    from pipeline.schema import Turn

    proc = run_cli(str(pyannote_sample), "--output-format", "rttm", "--output-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rttm = tmp_path / "sample.rttm"
    lines = [line.split(" ") for line in rttm.read_text().splitlines()]
    assert lines and all(len(f) == 10 and f[:3] == ["SPEAKER", "sample", "1"] for f in lines)
    assert all(f[5:7] == ["<NA>", "<NA>"] and f[8:] == ["<NA>", "<NA>"] for f in lines)
    turns = [Turn(float(f[3]), round(float(f[3]) + float(f[4]), 3), f[7]) for f in lines]
    assert [(t.start, t.end) for t in turns] == sorted((t.start, t.end) for t in turns)
    assert all(0 <= t.start <= t.end <= 30.01 for t in turns)
    assert len(read_rttm(rttm).labels()) >= 2
    reference = read_rttm(pyannote_sample.with_suffix(".rttm"))
    assert diarization_error_rate(reference, turns, collar=0.25) < 0.5


def test_missing_models_are_clear_errors(pyannote_sample):
    proc = run_cli(str(pyannote_sample), "--diarize", "--diarize-model", "org/not-cached-pipeline")
    assert proc.returncode == 2 and "--diarize-model" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_alignment_model_fails_before_work(pyannote_sample):
    proc = run_cli(str(pyannote_sample), "--align-model", "default")
    assert proc.returncode == 2 and "--align-model" in proc.stderr and "Traceback" not in proc.stderr


def test_decompression_bomb_is_a_clear_error(tmp_path):
    bomb = tmp_path / "bomb.flac"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono"]
        + ["-t", "18000", str(bomb)],
        check=True,
    )
    proc = run_cli(str(bomb))
    assert proc.returncode == 1 and "from its header" in proc.stderr and "Traceback" not in proc.stderr
