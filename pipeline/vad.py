"""Speech regions -> chunks of at most 30 s (WhisperX's cut-and-merge), with the pyannote
segmentation weights that ship inside whisperx, so it works offline."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from pipeline.models import whisperx_vad_weights
from pipeline.schema import SAMPLE_RATE, Audio, Chunk


@dataclass(frozen=True)
class VadOptions:
    onset: float = 0.500          # WhisperX's defaults
    offset: float = 0.363
    chunk_seconds: float = 30.0
    # pyannote scores 10 s windows; WhisperX slides them by 1 s (10x overlap). A larger step
    # scores each frame fewer times: cheaper, nearly the same regions. 1.0 = WhisperX exactly.
    step_seconds: float = 1.0
    batch_size: int = 32


class SpeechDetector:
    """Holds the VAD model; `chunks()` is thread-compatible but not re-entrant."""

    def __init__(self, options: VadOptions = VadOptions(), device: str = "cpu"):
        import torch
        from pyannote.audio import Inference, Model

        # Lightning logs a checkpoint-upgrade notice on every load of these v1 weights.
        logging.getLogger("lightning.pytorch.utilities.migration.utils").setLevel(logging.WARNING)

        self.options = options
        model = Model.from_pretrained(str(whisperx_vad_weights()))
        duration = model.specifications.duration
        # Same scoring as pyannote's VoiceActivityDetection: max over the model's speaker classes.
        self._inference = Inference(
            model,
            duration=duration,
            step=min(options.step_seconds, duration),
            batch_size=options.batch_size,
            device=torch.device(device),
            pre_aggregation_hook=lambda scores: np.max(scores, axis=-1, keepdims=True),
        )

    def chunks(self, audio: Audio, audio_id: str) -> list[Chunk]:
        return [
            Chunk(audio_id=audio_id, index=i, start=start, end=end,
                  samples=audio.samples[int(start * SAMPLE_RATE): int(end * SAMPLE_RATE)])
            for i, (start, end) in enumerate(self.regions(audio))
        ]

    def regions(self, audio: Audio) -> list[tuple[float, float]]:
        """(start, end) of each chunk: speech merged up to chunk_seconds, in order."""
        import torch
        from whisperx.vads.pyannote import Pyannote

        if audio.duration < 0.1:
            return []
        waveform = torch.from_numpy(audio.samples).unsqueeze(0)
        scores = self._inference({"waveform": waveform, "sample_rate": SAMPLE_RATE})
        merged = Pyannote.merge_chunks(
            scores, self.options.chunk_seconds, onset=self.options.onset, offset=self.options.offset,
        )
        regions = []
        for m in merged:
            start = max(0.0, float(m["start"]))
            end = min(audio.duration, float(m["end"]))
            if end - start > 0.02:
                regions.append((round(start, 3), round(end, 3)))
        return regions
