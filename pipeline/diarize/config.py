"""What a diarization is asked for: the speaker count of one request, the diarizer's settings."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import InvalidOption
from pipeline.torch_runtime import TorchRuntime

# The offline recipe's revision, in the diarization cache key: bump when the same settings give
# other turns (2: the segmentation's own activity, not the VAD's regions; issue 23).
RECIPE_REVISION = 2
MAX_SPEAKERS = 8  # the upper bound of an estimated count when none is given
OFFLINE_METHODS = ("segmentation", "windows")


@dataclass(frozen=True)
class SpeakerCount:
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None

    @property
    def given(self) -> bool:
        return (self.num_speakers, self.min_speakers, self.max_speakers) != (None, None, None)

    def bounds(self) -> tuple[int, int]:
        if self.num_speakers is not None:
            if not 1 <= self.num_speakers <= 32:
                raise InvalidOption("num_speakers must be between 1 and 32")
            return self.num_speakers, self.num_speakers
        low = 1 if self.min_speakers is None else self.min_speakers
        high = max(low, MAX_SPEAKERS) if self.max_speakers is None else self.max_speakers
        if not 1 <= low <= high:
            raise InvalidOption("need 1 <= min_speakers <= max_speakers")
        return low, high


@dataclass(frozen=True)
class DiarizeConfig:
    model: str | None = None  # None: an offline method; else pyannote name or directory
    method: str = "segmentation"  # the offline backend: "segmentation" or "windows"
    # Chunk step of the segmentation method (chunks are 5 s): 1 s scores every frame five times.
    segmentation_step: float = 1.0
    hop_seconds: float = 0.2  # window step of the "windows" method
    # "windows" method: fraction of each window's most similar windows kept in the affinity graph. Measured on
    # shared/data/speech: 0.5 found the right speaker count on 7 of 8 files (1-3 speakers).
    keep_fraction: float = 0.5
    # Precision and compile of the offline speaker encoder. A pyannote pipeline runs as
    # pyannote configures it (float32, not compiled): its models sit inside its pipeline.
    runtime: TorchRuntime = TorchRuntime()
    # Known speakers one request may name (OpenAI allows 4; each costs one reference's embedding).
    max_known_speakers: int = 4

    @property
    def model_id(self) -> str:
        """The id reported for the turns (pure: nothing is loaded)."""
        if self.model:
            return f"pyannote/{self.model}"
        if self.method == "windows":
            return "resemblyzer+spectral"
        return "whisperx-segmentation+resemblyzer"

    def check(self) -> None:
        if self.method not in OFFLINE_METHODS:
            raise InvalidOption(f"diarize method must be one of {', '.join(OFFLINE_METHODS)}, not {self.method!r}")
        if not 0.1 <= self.segmentation_step <= 5.0:
            raise InvalidOption("diarize segmentation_step must be between 0.1 and 5 seconds")
