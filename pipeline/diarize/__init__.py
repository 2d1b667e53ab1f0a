"""Who spoke when: audio (and optionally the VAD's speech) -> speaker turns, in parallel with ASR.
Backends: segmentation.py (offline default), windows.py (offline, cheaper), pyannote.py (a model configured).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from pipeline.batching import BatchStats, ForwardBatcher
from pipeline.diarize.clustering import cluster
from pipeline.diarize.config import MAX_SPEAKERS, DiarizeConfig, SpeakerCount
from pipeline.diarize.encoder import FRAME_SECONDS, WINDOW_FRAMES, SpeakerEncoder
from pipeline.diarize.known import SpeakerReference, VoicePrints, name_speakers
from pipeline.diarize.pyannote import PyannoteBackend, share_pyannote_forwards
from pipeline.diarize.segmentation import SegmentationBackend
from pipeline.diarize.windows import WindowsBackend
from pipeline.placement import Placement
from pipeline.schema import Audio, Turn
from pipeline.torch_runtime import TorchRuntime

# What callers import from here; the rest lives in the modules.
__all__ = [
    "FRAME_SECONDS", "MAX_SPEAKERS", "WINDOW_FRAMES",
    "DiarizeConfig", "Diarizer", "SpeakerCount", "cluster", "share_pyannote_forwards",
]  # fmt: skip

log = logging.getLogger(__name__)


class Backend(Protocol):
    batchers: dict[str, ForwardBatcher]  # the model forwards concurrent calls share, by name

    def diarize(self, audio: Audio, speech: list[tuple[float, float]] | None, count: SpeakerCount) -> list[Turn]: ...


class Diarizer:
    def __init__(self, config: DiarizeConfig = DiarizeConfig(), placement: Placement = Placement()):
        self.config = config
        self.placement = placement
        self.model_id = config.model_id
        self._encoder: SpeakerEncoder | None = None  # for known speakers beside a pyannote pipeline
        self._encoder_lock = threading.Lock()
        config.runtime.check(placement, "diarize")
        config.check()
        self._backend: Backend
        if config.model:
            if config.runtime != TorchRuntime():
                log.warning("torch dtype / compile apply to the offline speaker encoder, not to pyannote pipelines")
            self._backend = PyannoteBackend(config.model, placement.torch_device)
        elif config.method == "segmentation":
            self._backend = SegmentationBackend(config, placement)
        else:
            self._backend = WindowsBackend(config, placement)

    def diarize(
        self,
        audio: Audio,
        speech: list[tuple[float, float]] | None = None,
        count: SpeakerCount = SpeakerCount(),
        references: Sequence[SpeakerReference] = (),
    ) -> list[Turn]:
        """Speaker turns in time order. `speech`: the VAD's regions. The windows method keeps its
        turns inside them; the segmentation method gives none when they are empty and otherwise
        follows its own, finer activity (quiet and overlapped speech the VAD drops); pyannote
        finds its own. `references`: known speakers, whose names replace the labels of the
        speakers whose voice matches (known.py)."""
        turns = self._backend.diarize(audio, speech, count)
        if references:
            turns = name_speakers(turns, audio, references, VoicePrints(self.voice_encoder))
        return turns

    @property
    def voice_encoder(self) -> SpeakerEncoder:
        """The offline speaker encoder: the backend's own, or (pyannote) one loaded on first use."""
        encoder = getattr(self._backend, "encoder", None)
        if encoder is None:
            with self._encoder_lock:
                if self._encoder is None:
                    self._encoder = SpeakerEncoder(self.config, self.placement)
            encoder = self._encoder
        return encoder

    def batch_stats(self) -> dict[str, BatchStats]:
        """How concurrent calls shared each model's forwards (pipeline/batching.py)."""
        return {name: batcher.stats for name, batcher in self._backend.batchers.items()}
