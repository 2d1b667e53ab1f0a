"""`whisperx-serve transcribe`: once as a user types it (the installed command in a real
subprocess, several real files, one of them broken), and the rest in-process through the
CLI's own `main(argv)` with the run's shared models (`pipeline.runner.shared_pipeline`): the
same parser, exit codes and messages, without loading the models again per call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from cluster.cli import main

CLI = Path(sys.executable).parent / "whisperx-serve"


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `whisperx-serve transcribe ARGS` run in this process."""
    capsys.readouterr()
    code = main(["transcribe", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_many_files_with_a_bad_one_as_a_user_types_it(pyannote_sample, speak, tmp_path):
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(np.random.default_rng(2).bytes(1000))
    fox = speak("The quick brown fox jumps over the lazy dog.")
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(CLI), "transcribe", str(pyannote_sample), str(bad), str(fox), "--output-dir", str(out)]
        + ["--output-format", "srt"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr
    assert "broken.mp3" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{fox.stem}.srt", "sample.srt"])
    assert "lazy dog" in (out / f"{fox.stem}.srt").read_text()
    assert "New Jersey" in (out / "sample.srt").read_text()


def test_one_file_prints_json(capsys, local_pipeline, pyannote_sample):
    code, out, err = run_main(capsys, str(pyannote_sample))
    assert code == 0, err
    body = json.loads(out)
    assert "New Jersey" in body["text"]
    assert body["word_segments"] and body["models"]["asr"] == "bundled/tiny.en"


def test_bad_language_is_a_clear_error(capsys, local_pipeline, pyannote_sample):
    code, _, err = run_main(capsys, str(pyannote_sample), "--language", "xx")
    assert code == 2
    assert "not supported" in err and "Traceback" not in err


def test_diarize_prints_speaker_labelled_words(capsys, local_pipeline, pyannote_sample):
    code, out, err = run_main(capsys, str(pyannote_sample), "--diarize")
    assert code == 0, err
    body = json.loads(out)
    assert body["models"]["diarize"] == "whisperx-segmentation+resemblyzer"
    assert len({w["speaker"] for w in body["word_segments"]}) == 2
    assert all({"start", "end", "speaker"} <= w.keys() for w in body["word_segments"])
    _, vtt, _ = run_main(capsys, str(pyannote_sample), "--diarize", "--num-speakers", "2", "--output-format", "vtt")
    assert "[SPEAKER_00]: " in vtt and "[SPEAKER_01]: " in vtt


def test_rttm_output_is_the_speaker_turns(capsys, local_pipeline, pyannote_sample, tmp_path):
    """`--output-format rttm` diarizes without --diarize and writes <stem>.rttm: one valid
    RTTM line per turn, named after the input, readable by pyannote, close to the reference."""
    from benchmarks.evaluation import diarization_error_rate, read_rttm
    from pipeline.schema import Turn

    code, _, err = run_main(capsys, str(pyannote_sample), "--output-format", "rttm", "--output-dir", str(tmp_path))
    assert code == 0, err
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


def test_missing_models_are_clear_errors(capsys, local_pipeline, pyannote_sample, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_main(capsys, str(pyannote_sample), "--diarize", "--diarize-model", "org/not-cached-pipeline")
    assert code == 2 and "--diarize-model" in err and "Traceback" not in err
    # A given language's alignment model is checked before any work ...
    code, _, err = run_main(capsys, str(pyannote_sample), "--align-model", "default", "--language", "en")
    assert code == 2 and "--align-model" in err and "Traceback" not in err
    # ... a detected language's once it is known: that file fails, saying why.
    code, _, err = run_main(capsys, str(pyannote_sample), "--align-model", "default")
    assert code == 1 and "--align-model" in err and "Traceback" not in err


def test_decompression_bomb_is_a_clear_error(capsys, local_pipeline, bomb_flac):
    code, _, err = run_main(capsys, str(bomb_flac))
    assert code == 1 and "from its header" in err and "Traceback" not in err
