"""Whisper's cross-attention word times, kept on speech.

Whisper's DTW path gives each word the span from its first token to the next word's first
token, so a word before a pause absorbs the pause: on an AMI meeting snippet one "Okay."
lasted 13 s. A chunk merges VAD speech regions up to 30 s, so it holds such pauses. Here, per
chunk, in audio time:

1. a word that overlaps speech is clipped to one speech region: the one holding its start
   when it starts on speech (the start is where the path entered the word; the stretched
   side is the end), else the region holding most of it;
2. a word is no longer than its length allows (`max_word_seconds`);
3. a word that lies wholly in a pause (the VAD rejected it) is moved to the speech between
   its neighbours, at the edge of the nearest region.

Pure functions over `Word`s; the wav2vec2 aligner keeps its own times.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.intervals import Region, Regions, overlap
from pipeline.schema import Word, ms

# A word's longest duration: min(MAX_S, BASE_S + PER_LETTER_S per letter) (letters and
# digits; a CJK character counts as one). The upper envelope of the cross-attention durations
# of words that lie inside one VAD speech region and are not its last word (those are not
# stretched over a pause), over the 40 English dev files + the three diarization files: the
# longest per letter count was 0.98 s (1 letter), 0.84 (2), 0.96 (3), 1.32 (4), 0.98 (5),
# 1.04 (7) and under 0.9 s from 8 letters on; p99 0.68-0.86 s except 4 letters (1.28 s). So
# no such word is cut on the dev set; the cap is a backstop for stretches the VAD kept (noise,
# untranscribed speech), and MAX_S keeps every word under the 2 s.
BASE_S = 1.0
PER_LETTER_S = 0.08
MAX_S = 2.0


def letters(word: str) -> int:
    return sum(1 for c in word if c.isalnum())


def max_word_seconds(word: str) -> float:
    return min(MAX_S, BASE_S + PER_LETTER_S * max(1, letters(word)))


def bound_words(words: list[Word], speech: Sequence[tuple[float, float]]) -> list[Word]:
    """Clip, cap and re-time `words` (in time order, one chunk's, audio time) in place;
    `speech`: the chunk's speech regions (empty: unknown, only the cap applies)."""
    if not words:
        return words
    regions = Regions.of(speech)
    off_speech = []
    for k, w in enumerate(words):
        if regions.spans:
            region = _region_of(w.start, w.end, regions)
            if region is None:
                off_speech.append(k)
                continue
            w.start, w.end = max(w.start, region[0]), min(w.end, region[1])
            if w.end < w.start:
                w.end = w.start
        cap = max_word_seconds(w.word)
        if w.end - w.start > cap:
            w.end = w.start + cap
    for k in off_speech:
        _retime(words, k, regions, set(off_speech))
    for w in words:
        w.start, w.end = ms(w.start), ms(w.end)
    return words


def _region_of(start: float, end: float, regions: Regions) -> Region | None:
    """The speech region a word belongs to, or None when it touches no speech."""
    held = regions.holding(start, closed=start == end)
    if held is not None:
        return regions.spans[held]
    shared = regions.overlapping(start, end)
    return max((regions.spans[i] for i in shared), key=lambda r: overlap(r, (start, end)), default=None)


def _retime(words: list[Word], k: int, regions: Regions, off: set[int]) -> None:
    """Move word k (in no speech region) onto the speech between its neighbours."""
    w = words[k]
    lo = words[k - 1].end if k > 0 else float("-inf")
    nxt = next((j for j in range(k + 1, len(words)) if j not in off), None)
    hi = words[nxt].start if nxt is not None else float("inf")
    middle = (w.start + w.end) / 2
    candidates = regions.clip(lo, hi)
    cap = max_word_seconds(w.word)
    if not candidates:  # no speech between the neighbours: a point at the nearer one
        if lo == float("-inf") and hi == float("inf"):
            w.end = min(w.end, w.start + cap)
        else:
            w.start = w.end = lo if middle - lo <= hi - middle else hi
        return
    s, e = min(candidates, key=lambda r: min(abs(middle - r[0]), abs(middle - r[1])))
    duration = min(cap, max(w.end - w.start, 0.0), e - s)
    if middle <= s:  # a pause before speech: the word starts the speech
        w.start, w.end = s, s + duration
    else:  # a pause after speech: the word ends it
        w.start, w.end = e - duration, e
