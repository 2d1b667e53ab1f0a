"""Words x speaker turns -> a speaker on every word and segment; segments split where the
speaker changes mid-segment."""

from __future__ import annotations

import math
from dataclasses import replace

from pipeline.intervals import OverlapIndex
from pipeline.schema import Segment, Turn, Word

# The label of the one speaker of a file in which diarization found no turn (both backends
# number their speakers SPEAKER_00, SPEAKER_01, ...).
SOLE_SPEAKER = "SPEAKER_00"


def assign_speakers(segments: list[Segment], turns: list[Turn], separator: str = " ") -> list[Segment]:
    """New segments whose words carry speakers; one speaker per segment."""
    if not turns:
        # Diarization ran but found no turn while ASR found words: speech too short to embed
        # (the offline backend skips VAD regions under 0.2 s) or outside the VAD's speech
        # regions (ASR chunks are merged with other thresholds). A 0.1 s clip came back as
        # words without speakers; with no evidence of several speakers, there is one.
        turns = [Turn(0.0, math.inf, SOLE_SPEAKER)]
    index = OverlapIndex([(t.start, t.end) for t in turns])

    def speaker_of(start: float, end: float) -> str:
        """The turn overlapping [start, end] the most; with no overlap, the turn nearest its
        middle (ties: the first turn given)."""
        i = index.most_overlapping(start, end)
        return turns[index.nearest((start + end) / 2) if i is None else i].speaker

    out: list[Segment] = []
    for seg in segments:
        if not seg.words:
            out.append(replace(seg, speaker=speaker_of(seg.start, seg.end)))
            continue
        words = [replace(w, speaker=speaker_of(w.start, w.end)) for w in seg.words]
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
