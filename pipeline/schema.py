"""Typed seams between the stages. Times are seconds from the start of the audio."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

SAMPLE_RATE = 16_000


def ms(seconds: float) -> float:
    """A time as reported: to the millisecond."""
    return round(seconds, 3)


@dataclass(frozen=True)
class Audio:
    """Decoded audio: 16 kHz mono float32 in [-1, 1]."""

    samples: np.ndarray

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True)
class Chunk:
    """At most 30 s of speech cut from one audio; the unit that ASR batches."""

    audio_id: str
    index: int
    start: float
    end: float
    samples: np.ndarray = field(repr=False)
    # The VAD's speech regions inside [start, end], in audio time: a chunk merges regions up
    # to 30 s, so it holds silences that word times must not span. Empty: not known.
    speech: tuple[tuple[float, float], ...] = ()


@dataclass
class Word:
    word: str
    start: float
    end: float
    score: float | None = None
    speaker: str | None = None
    # True when the alignment model could not place the word (digits, symbols) and its
    # times were interpolated from its neighbours.
    interpolated: bool | None = None


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    avg_logprob: float | None = None
    speaker: str | None = None

    @classmethod
    def from_dict(cls, raw: dict) -> Segment:
        """From `asdict`'s shape or WhisperX's JSON (where words may be absent)."""
        words = [Word(**w) for w in raw.get("words", [])]
        return cls(
            float(raw["start"]), float(raw["end"]), str(raw["text"]), words, raw.get("avg_logprob"), raw.get("speaker")
        )


@dataclass(frozen=True)
class Turn:
    """A stretch of one speaker's speech. Turns of different speakers may overlap."""

    start: float
    end: float
    speaker: str


def segment_dict(segment: Segment) -> dict:
    """A segment as WhisperX's JSON writes it: fields that are None left out, its words' too."""
    raw = _drop_none(asdict(segment))
    raw["words"] = [_drop_none(w) for w in raw["words"]]
    return raw


def normalized_turns(turns: Iterable[Turn]) -> list[Turn]:
    """Turns as reported: to the millisecond, sorted by (start, end, speaker)."""
    return sorted((Turn(ms(t.start), ms(t.end), t.speaker) for t in turns), key=lambda t: (t.start, t.end, t.speaker))


@dataclass
class ChunkResult:
    """What ASR returns for one chunk: its text split into segments with word times."""

    audio_id: str
    index: int
    language: str
    segments: list[Segment]
    start: float = 0.0  # the chunk's span in the audio
    end: float = 0.0


@dataclass
class Transcript:
    segments: list[Segment]
    language: str
    duration: float
    models: dict[str, str] = field(default_factory=dict)
    # Diarization's turns, sorted by (start, end), overlaps kept (None: not diarized). Unlike
    # the speakers on words and segments, they include speech without words ("mm-hm").
    speaker_turns: list[Turn] | None = None

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]

    def to_dict(self) -> dict:
        """WhisperX's result shape: segments with words, plus word_segments and language; and
        speaker_turns [{start, end, speaker}] when diarized."""
        segments = [segment_dict(s) for s in self.segments]
        body = {
            "language": self.language,
            "duration": ms(self.duration),
            "text": self.text,
            "segments": segments,
            "word_segments": [w for seg in segments for w in seg["words"]],
            "models": dict(self.models),
        }
        if self.speaker_turns is not None:
            body["speaker_turns"] = [asdict(t) for t in normalized_turns(self.speaker_turns)]
        return body

    @classmethod
    def from_dict(cls, data: dict) -> Transcript:
        segments = [Segment.from_dict(s) for s in data["segments"]]
        turns = data.get("speaker_turns")
        return cls(
            segments=segments,
            language=data["language"],
            duration=data["duration"],
            models=dict(data.get("models", {})),
            speaker_turns=None if turns is None else [Turn(t["start"], t["end"], t["speaker"]) for t in turns],
        )


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}
