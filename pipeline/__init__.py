"""whisperx-serve's pipeline library: audio in, transcript out. Imports no Ray."""

import os as _os

# pyannote 4 sends usage telemetry unless told not to; this project runs offline.
_os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pipeline.errors import (  # noqa: E402
    AudioDecodeError,
    AudioEmpty,
    AudioTooLarge,
    AudioTooLong,
    AudioTruncated,
    InvalidOption,
    ModelNotFound,
    PipelineError,
    UnsupportedLanguage,
)
from pipeline.schema import Audio, Chunk, ChunkResult, Segment, Transcript, Turn, Word  # noqa: E402

__all__ = [
    "Audio", "Chunk", "ChunkResult", "Segment", "Transcript", "Turn", "Word",
    "PipelineError", "AudioDecodeError", "AudioEmpty", "AudioTooLarge", "AudioTooLong", "AudioTruncated",
    "InvalidOption", "ModelNotFound", "UnsupportedLanguage",
]  # fmt: skip
