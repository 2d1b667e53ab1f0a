"""What the result cache holds per stage, as JSON bytes (never pickle: entries may be read
back from disk). Each decoder checks the shape it reads and raises ValueError otherwise."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from pipeline.schema import ChunkResult, Segment, Turn, Word


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
    return [
        Segment(
            start=float(s["start"]),
            end=float(s["end"]),
            text=str(s["text"]),
            words=[Word(**w) for w in s["words"]],
            avg_logprob=s.get("avg_logprob"),
            speaker=s.get("speaker"),
        )
        for s in raw
    ]


def _dump(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _load(data: bytes):
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a cache entry: {exc}") from exc


@dataclass
class Reused:
    """What a request takes from the cache; the stages it still runs follow from it."""

    asr: AsrEntry | None = None
    aligned: list[Segment] | None = None
    turns: list[Turn] | None = None

    def plan_for(self, plan):
        """The plan with the cached ASR's language (a detected one counts as detected)."""
        if self.asr is None or not plan.detects_language:
            return plan
        return plan.with_language(self.asr.language)

    def segments(self, plan, results: list[ChunkResult] | None = None) -> list[Segment]:
        """The timed segments a transcript is assembled from: the cached alignment if there is
        one, else ASR's own segments of `results` (the cached chunks when not given)."""
        if self.aligned is not None:
            return self.aligned
        return plan.chunk_segments(self.asr.chunks if results is None else results)

    def runs(self, plan) -> tuple[str, ...]:
        """The model stages still to run: "asr", "align", "diarize" (nothing: a full hit)."""
        out = []
        if self.asr is None:
            out.append("asr")
            if plan.aligns:
                out.append("align")
        elif self.plan_for(plan).aligns and self.asr.chunks and self.aligned is None:
            out.append("align")
        if plan.diarize and self.turns is None:
            out.append("diarize")
        return tuple(out)

    def skipped_stages(self) -> tuple[str, ...]:
        """The plan's stage names the cache answered (pipeline.plan.Plan.stages)."""
        out = ("vad", "language", "asr", "word_times") if self.asr is not None else ()
        out += ("align",) if self.aligned is not None else ()
        return out + (("diarize",) if self.turns is not None else ())

    def state(self, plan) -> str:
        """X-Cache: hit (nothing ran), partial (some stages reused) or miss."""
        if not self.runs(plan):
            return "hit"
        reused = (self.asr, self.aligned, self.turns)
        return "partial" if any(r is not None for r in reused) else "miss"


def reuse(plan, keys, entries: dict[str, bytes]) -> Reused:
    """Decode what a lookup found for these keys; an entry that does not decode is ignored
    (recomputed and overwritten), never trusted."""
    reused = Reused()
    if keys.asr in entries:
        reused.asr = _decoded(decode_asr, entries[keys.asr])
    if reused.asr is not None and keys.align in entries:
        reused.aligned = _decoded(decode_segments, entries[keys.align])
    if keys.diarize in entries:
        reused.turns = _decoded(decode_turns, entries[keys.diarize])
    return reused


def _decoded(decoder, data: bytes):
    try:
        return decoder(data)
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
