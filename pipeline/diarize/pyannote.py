"""pyannote's speaker-diarization pipelines (via whisperx's DiarizationPipeline), when a model
is configured: an HF name with HF_TOKEN, or a local directory holding config.yaml and weights."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pipeline.batching import ForwardBatcher
from pipeline.diarize.config import SpeakerCount
from pipeline.errors import ModelNotFound
from pipeline.models import downloads_allowed
from pipeline.schema import Audio, Turn, normalized_turns

log = logging.getLogger(__name__)


class PyannoteBackend:
    def __init__(self, model: str, device: str):
        from whisperx.diarize import DiarizationPipeline

        token = os.environ.get("HF_TOKEN")
        local = Path(model).expanduser()
        if local.is_dir() and not (local / "config.yaml").is_file():
            raise ModelNotFound(f"{local} has no config.yaml: not a pyannote pipeline directory")
        if not local.is_dir() and not downloads_allowed() and not in_hf_cache(model):
            raise ModelNotFound(
                f"diarization model {model!r} is not in the Hugging Face cache and downloads are off: "
                f"set --diarize-model / diarize.model to a local pyannote pipeline directory, or set "
                f"WXS_ALLOW_DOWNLOAD=1 and HF_TOKEN (the model is gated)"
            )
        try:
            self.pipeline = DiarizationPipeline(
                model_name=str(local) if local.is_dir() else model, token=token, device=device
            )
        except Exception as exc:
            raise ModelNotFound(f"cannot load pyannote pipeline {model!r}: {exc}") from exc
        self.batchers = share_pyannote_forwards(self.pipeline.model)

    def diarize(self, audio: Audio, speech, count: SpeakerCount) -> list[Turn]:
        count.bounds()
        frame = self.pipeline(
            audio.samples,
            num_speakers=count.num_speakers,
            min_speakers=count.min_speakers,
            max_speakers=count.max_speakers,
        )
        return normalized_turns(Turn(float(r.start), float(r.end), str(r.speaker)) for r in frame.itertuples())


def share_pyannote_forwards(pipeline) -> dict[str, ForwardBatcher]:
    """Concurrent runs of a pyannote pipeline share its segmentation and embedding forwards (up to
    two callers' batches each); changes `pipeline` in place, one without those parts runs as is."""
    batchers = {}
    segmentation = getattr(pipeline, "_segmentation", None)
    if segmentation is not None and hasattr(segmentation, "infer"):
        rows = 2 * max(1, getattr(pipeline, "segmentation_batch_size", 32))
        batchers["segmentation"] = segmentation.infer = ForwardBatcher(segmentation.infer, rows)
    embedding = getattr(pipeline, "_embedding", None)
    if embedding is not None:
        rows = 2 * max(1, getattr(pipeline, "embedding_batch_size", 32))
        pipeline._embedding = _SharedEmbedding(embedding, rows)
        batchers["embedding"] = pipeline._embedding.batcher
    if not batchers:
        log.warning("pyannote pipeline %s: no segmentation/embedding to batch across requests", type(pipeline))
    return batchers


class _SharedEmbedding:
    """pyannote's speaker embedding (`embedding(waveforms, masks=...)`), its calls batched
    across concurrent diarizations; everything else is the wrapped object's."""

    def __init__(self, embedding, max_rows: int):
        self._embedding = embedding
        self.batcher = ForwardBatcher(lambda waveforms, masks: embedding(waveforms, masks=masks), max_rows)

    def __call__(self, waveforms, masks=None):
        if masks is None:
            return self._embedding(waveforms)
        return self.batcher(waveforms, masks)

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "_embedding":  # copy/pickle probe before __init__ ran
            raise AttributeError(name)
        return getattr(self._embedding, name)


def in_hf_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id, local_files_only=True)
        return True
    except Exception:
        return False
