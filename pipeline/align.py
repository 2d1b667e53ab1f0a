"""Word timings: wav2vec2 CTC forced alignment through whisperx when an alignment model is
configured; otherwise the Whisper cross-attention times that ASR already put on every word.

Alignment models are loaded per language on demand and kept in a bounded LRU (an unbounded
per-language cache is a known out-of-memory cause). Words the CTC model cannot place get
times interpolated from their neighbours and `interpolated=True`, `score=0.0`.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import ModelNotFound, UnsupportedLanguage
from pipeline.models import downloads_allowed
from pipeline.placement import Placement
from pipeline.schema import Audio, ChunkResult, Segment, Word
from pipeline.torch_runtime import TorchRuntime

log = logging.getLogger(__name__)

DEFAULT = "default"  # whisperx's default wav2vec2 model for the language
LANGUAGES_WITHOUT_SPACES = ("ja", "zh")
CROSS_ATTENTION_ID = "whisper-cross-attention"


@dataclass(frozen=True)
class AlignConfig:
    # None: Whisper cross-attention times (no extra model). "default": whisperx's wav2vec2
    # model for each language. Otherwise an HF name or a local directory, for every language
    # not named in `language_models`.
    model: str | None = None
    language_models: dict[str, str] = field(default_factory=dict)
    max_loaded_models: int = 2
    runtime: TorchRuntime = TorchRuntime()  # precision and compile of the wav2vec2 models

    @property
    def enabled(self) -> bool:
        return bool(self.model or self.language_models)

    def model_name(self, language: str) -> str | None:
        """The model for `language`; None where `default` has no model for it (its words keep
        Whisper's cross-attention times rather than failing the request)."""
        name = self.language_models.get(language, self.model)
        if name == DEFAULT and not has_default_model(language):
            return None
        return name

    def model_id(self, language: str) -> str:
        """The id reported for `language`'s word times (pure: nothing is loaded)."""
        name = self.model_name(language)
        if not name:
            return CROSS_ATTENTION_ID
        local = Path(name).expanduser()
        return f"wav2vec2/local/{local.name}" if local.is_dir() else f"wav2vec2/{name}"


def has_default_model(language: str) -> bool:
    """whisperx ships a default wav2vec2 model for this language."""
    from whisperx.alignment import DEFAULT_ALIGN_MODELS_HF, DEFAULT_ALIGN_MODELS_TORCH

    return language in DEFAULT_ALIGN_MODELS_TORCH or language in DEFAULT_ALIGN_MODELS_HF


def word_separator(language: str) -> str:
    return "" if language in LANGUAGES_WITHOUT_SPACES else " "


class Aligner:
    def __init__(self, config: AlignConfig = AlignConfig(), placement: Placement = Placement()):
        self.config = config
        self.placement = placement
        self.device = placement.torch_device
        config.runtime.check(placement, "align")
        self._models: OrderedDict[str, tuple[object, dict]] = OrderedDict()
        self._lock = threading.Lock()

    def model_name(self, language: str) -> str | None:
        return self.config.model_name(language)

    def preload(self, language: str) -> None:
        """Load the language's model now (if one is configured), so a missing model fails early."""
        name = self.model_name(language)
        if name:
            self._load(language, name)

    def loaded(self) -> list[str]:
        return list(self._models)

    def align(self, audio: Audio, chunks: list[ChunkResult], language: str) -> list[Segment]:
        """ASR results -> sentence segments with CTC word times, one chunk at a time (whisperx
        aligns each chunk's text inside its span). A chunk the CTC model cannot align keeps
        its cross-attention times. Without a model for the language, nothing changes."""
        ordered = sorted(chunks, key=lambda r: r.index)
        name = self.model_name(language)
        if not name or not ordered:  # nothing to align: no model is loaded for silence
            return [seg for r in ordered for seg in r.segments]
        import whisperx

        from pipeline.punkt import ensure_punkt

        ensure_punkt()
        model, metadata = self._load(language, name)
        sep = word_separator(language)
        segments: list[Segment] = []
        for r in ordered:
            text = sep.join(s.text for s in r.segments).strip()
            if not text:
                continue
            result = whisperx.align(
                [{"start": r.start, "end": r.end, "text": text}],
                model,
                metadata,
                audio.samples,
                self.device,
                return_char_alignments=False,
            )
            aligned = result["segments"]
            if not aligned or any(not seg.get("words") for seg in aligned):
                log.warning("alignment failed for chunk %s; keeping cross-attention times", r.index)
                segments.extend(r.segments)
                continue
            logprob = r.segments[0].avg_logprob
            segments.extend(_segment(raw, audio.duration, logprob) for raw in aligned)
        return segments

    def _load(self, language: str, name: str):
        key = f"{language}:{name}"
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            model, metadata = _load_align_model(language, name, self.device)
            loaded = (self.config.runtime.prepare(model, self.placement, "align"), metadata)
            if self.config.runtime.compile:  # compile now, not in the first request
                _warm_up(model, self.device)
            self._models[key] = loaded
            while len(self._models) > max(1, self.config.max_loaded_models):
                evicted, _ = self._models.popitem(last=False)
                log.info("evicted alignment model %s", evicted)
                gc.collect()
                if self.device.startswith("cuda"):
                    _empty_cuda_cache()
            return loaded


def _load_align_model(language: str, name: str, device: str):
    import whisperx
    from whisperx.alignment import DEFAULT_ALIGN_MODELS_HF, DEFAULT_ALIGN_MODELS_TORCH

    model_name = None if name == DEFAULT else str(Path(name).expanduser()) if Path(name).expanduser().is_dir() else name
    if model_name is None and language not in DEFAULT_ALIGN_MODELS_TORCH and language not in DEFAULT_ALIGN_MODELS_HF:
        raise UnsupportedLanguage(
            f"no default alignment model for language {language!r}: set align.language_models / "
            f"--align-model to a wav2vec2 CTC model for it"
        )
    is_local = model_name is not None and Path(model_name).is_dir()
    torch_bundle = DEFAULT_ALIGN_MODELS_TORCH.get(language) if model_name is None else model_name
    if not downloads_allowed() and not _torchaudio_weights_cached(torch_bundle):
        raise ModelNotFound(
            f"alignment model {torch_bundle} (torchaudio) is not in the torch hub cache and downloads are "
            f"off: set --align-model / align.model to a local wav2vec2 directory, or set WXS_ALLOW_DOWNLOAD=1"
        )
    try:
        return whisperx.load_align_model(
            language, device, model_name=model_name, model_cache_only=not (is_local or downloads_allowed())
        )
    except Exception as exc:  # whisperx raises ValueError/OSError/URLError for "not available"
        shown = model_name or f"the default for {language!r}"
        raise ModelNotFound(
            f"alignment model {shown} cannot be loaded ({type(exc).__name__}: {str(exc)[:200]}). "
            f"Set --align-model / align.model to a local wav2vec2 directory, pre-fetch it into the "
            f"HF cache, or set WXS_ALLOW_DOWNLOAD=1"
        ) from exc


def _warm_up(model, device: str) -> None:
    """One forward pass on a second of silence (torchaudio and HF wav2vec2 alike)."""
    import torch

    with torch.inference_mode():
        model(torch.zeros(1, 16_000, device=device))


def _torchaudio_weights_cached(name: str | None) -> bool:
    """True unless `name` is a torchaudio pipeline whose weights are not downloaded yet
    (torchaudio fetches them itself, whatever the caller's offline settings)."""
    import torch
    import torchaudio

    if name is None or name not in torchaudio.pipelines.__all__:
        return True
    bundle = getattr(torchaudio.pipelines, name)
    filename = Path(getattr(bundle, "_path", "")).name
    return bool(filename) and (Path(torch.hub.get_dir()) / "checkpoints" / filename).is_file()


def _segment(raw: dict, duration: float, avg_logprob: float | None) -> Segment:
    words = _fill_times(raw.get("words", []), float(raw["start"]), float(raw["end"]))
    start = min([w.start for w in words], default=float(raw["start"]))
    end = max([w.end for w in words], default=float(raw["end"]))
    start, end = round(max(0.0, start), 3), round(min(duration, end), 3)
    return Segment(start=start, end=end, text=raw["text"].strip(), words=words, avg_logprob=avg_logprob)


def _fill_times(raw_words: list[dict], seg_start: float, seg_end: float) -> list[Word]:
    """Every word gets a start and end: words the CTC model could not place (no score) are
    interpolated between their aligned neighbours, sharing the gap evenly."""
    n = len(raw_words)
    starts = np.array([w.get("start", np.nan) if w.get("score") is not None else np.nan for w in raw_words], float)
    ends = np.array([w.get("end", np.nan) if w.get("score") is not None else np.nan for w in raw_words], float)
    words: list[Word] = []
    i = 0
    while i < n:
        if not np.isnan(starts[i]) and not np.isnan(ends[i]):
            w = raw_words[i]
            words.append(
                Word(w["word"], round(float(starts[i]), 3), round(float(ends[i]), 3), round(float(w["score"]), 3))
            )
            i += 1
            continue
        j = i
        while j < n and (np.isnan(starts[j]) or np.isnan(ends[j])):
            j += 1
        gap_start = words[-1].end if words else seg_start
        gap_end = float(starts[j]) if j < n else seg_end
        gap_end = max(gap_end, gap_start)
        step = (gap_end - gap_start) / (j - i)
        for k in range(i, j):
            a = gap_start + (k - i) * step
            words.append(Word(raw_words[k]["word"], round(a, 3), round(a + step, 3), 0.0, interpolated=True))
        i = j
    previous_start = seg_start
    for w in words:  # keep the order monotonic and each word well-formed
        w.start = max(w.start, previous_start)
        w.end = max(w.end, w.start)
        previous_start = w.start
    return words


def _empty_cuda_cache() -> None:
    try:
        import torch

        torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort only
        pass
