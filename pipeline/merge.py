"""Words x speaker turns -> a speaker on every word and segment; segments split where the
speaker changes mid-segment."""

from __future__ import annotations

import math
from dataclasses import replace

from pipeline.schema import Segment, Turn, Word

# The label of the one speaker of a file in which diarization found no turn (both backends
# number their speakers SPEAKER_00, SPEAKER_01, ...).
SOLE_SPEAKER = "SPEAKER_00"


def speaker_of(start: float, end: float, turns: list[Turn]) -> str | None:
    """The turn overlapping [start, end] the most; with no overlap, the nearest turn."""
    if not turns:
        return None
    best, best_overlap = None, 0.0
    for turn in turns:
        overlap = min(end, turn.end) - max(start, turn.start)
        if overlap > best_overlap:
            best, best_overlap = turn.speaker, overlap
    if best is not None:
        return best
    middle = (start + end) / 2
    nearest = min(turns, key=lambda t: max(t.start - middle, middle - t.end, 0.0))
    return nearest.speaker


def assign_speakers(segments: list[Segment], turns: list[Turn], separator: str = " ") -> list[Segment]:
    """New segments whose words carry speakers; one speaker per segment."""
    if not turns:
        # Diarization ran but found no turn while ASR found words: speech too short to embed
        # (the offline backend skips VAD regions under 0.2 s) or outside the VAD's speech
        # regions (ASR chunks are merged with other thresholds). A 0.1 s clip came back as
        # words without speakers; with no evidence of several speakers, there is one.
        turns = [Turn(0.0, math.inf, SOLE_SPEAKER)]
    out: list[Segment] = []
    for seg in segments:
        if not seg.words:
            out.append(replace(seg, speaker=speaker_of(seg.start, seg.end, turns)))
            continue
        words = [replace(w, speaker=speaker_of(w.start, w.end, turns)) for w in seg.words]
        if all(w.speaker == words[0].speaker for w in words):
            out.append(replace(seg, words=words, speaker=words[0].speaker))
            continue
        run: list[Word] = [words[0]]
        for word in words[1:]:
            if word.speaker != run[-1].speaker:
                out.append(_segment(seg, run, separator))
                run = []
            run.append(word)
        out.append(_segment(seg, run, separator))
    return out


def _segment(parent: Segment, words: list[Word], separator: str) -> Segment:
    return Segment(
        start=words[0].start,
        end=max(w.end for w in words),
        text=separator.join(w.word for w in words).strip(),
        words=words,
        avg_logprob=parent.avg_logprob,
        speaker=words[0].speaker,
    )
