"""Helpers shared by the benchmark scripts: the dev set and the plain-WhisperX baseline."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEECH_DIR = Path(os.environ.get("WXS_SPEECH_DIR", REPO.parent / "shared" / "data" / "speech"))


@dataclass
class RunResult:
    name: str
    audio_seconds: float
    wall_seconds: float
    texts: list[str]

    @property
    def speed(self) -> float:
        """Audio seconds per wall second (x real time)."""
        return self.audio_seconds / self.wall_seconds


def english_dev_set():
    from benchmarks.evaluation import read_references

    if not (SPEECH_DIR / "references.tsv").is_file():
        raise SystemExit(f"no dev set at {SPEECH_DIR} (set WXS_SPEECH_DIR)")
    return [r for r in read_references(SPEECH_DIR) if r.language == "en"]


class PlainWhisperX:
    """WhisperX used as its README shows: load_audio -> model.transcribe(batch_size=16),
    model resident, files one after another; same bundled tiny.en, int8, pyannote VAD."""

    def __init__(self, threads: int = 2, batch_size: int = 16):
        import whisperx

        from pipeline.models import bundled_asr_dir

        self.batch_size = batch_size
        self.model = whisperx.load_model(
            str(bundled_asr_dir()), "cpu", compute_type="int8", language="en", vad_method="pyannote", threads=threads
        )

    def transcribe(self, path: Path) -> str:
        import whisperx

        audio = whisperx.load_audio(str(path))
        result = self.model.transcribe(audio, batch_size=self.batch_size)
        return " ".join(s["text"].strip() for s in result["segments"])

    def run(self, paths: list[Path], audio_seconds: float) -> RunResult:
        start = time.perf_counter()
        texts = [self.transcribe(p) for p in paths]
        return RunResult("plain WhisperX", audio_seconds, time.perf_counter() - start, texts)
