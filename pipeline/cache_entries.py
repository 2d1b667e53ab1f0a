"""What the result cache holds per stage, as JSON bytes (never pickle: entries may be read
back from disk). Each decoder checks the shape it reads and raises ValueError otherwise."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from pipeline.schema import ChunkResult, Segment, Turn


@dataclass(frozen=True)
class AsrEntry:
    """ASR over one audio: its chunks' results, the language and the VAD's speech regions
    (what diarization needs), so a request that adds a stage later skips ASR and the VAD."""

    duration: float
    language: str
    language_detected: bool
    speech: list[tuple[float, float]]
    chunks: list[ChunkResult]


def encode_asr(entry: AsrEntry) -> bytes:
    return _dump(asdict(entry))


def decode_asr(data: bytes) -> AsrEntry:
    raw = _load(data)
    return AsrEntry(
        duration=float(raw["duration"]),
        language=str(raw["language"]),
        language_detected=bool(raw["language_detected"]),
        speech=[(float(s), float(e)) for s, e in raw["speech"]],
        chunks=[
            ChunkResult(
                audio_id=str(c["audio_id"]),
                index=int(c["index"]),
                language=str(c["language"]),
                segments=_segments(c["segments"]),
                start=float(c["start"]),
                end=float(c["end"]),
            )
            for c in raw["chunks"]
        ],
    )


def encode_segments(segments: list[Segment]) -> bytes:
    return _dump([asdict(s) for s in segments])


def decode_segments(data: bytes) -> list[Segment]:
    return _segments(_load(data))


def encode_turns(turns: list[Turn]) -> bytes:
    return _dump([[t.start, t.end, t.speaker] for t in turns])


def decode_turns(data: bytes) -> list[Turn]:
    return [Turn(float(s), float(e), str(speaker)) for s, e, speaker in _load(data)]


def _segments(raw: list) -> list[Segment]:
    return [Segment.from_dict(s) for s in raw]


def _dump(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _load(data: bytes):
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a cache entry: {exc}") from exc


@dataclass(frozen=True)
class Reused:
    """What a request takes from the cache (pipeline.plan.Plan.with_cached decides what runs)."""

    asr: AsrEntry | None = None
    aligned: list[Segment] | None = None
    turns: list[Turn] | None = None


def reuse(keys, entries: dict[str, bytes]) -> Reused:
    """Decode what a lookup found for these keys; an entry that does not decode is ignored
    (recomputed and overwritten), never trusted."""
    asr = _decoded(decode_asr, entries[keys.asr]) if keys.asr in entries else None
    aligned = _decoded(decode_segments, entries[keys.align]) if asr is not None and keys.align in entries else None
    turns = _decoded(decode_turns, entries[keys.diarize]) if keys.diarize in entries else None
    return Reused(asr, aligned, turns)


def _decoded(decoder, data: bytes):
    try:
        return decoder(data)
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
