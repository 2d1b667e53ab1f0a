"""Accuracy measures shared by tests and benchmarks.

WER uses Whisper's English text normaliser (package whisper-normalizer) and jiwer, both
installed with the `test` extra.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def _english_normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize_english(text: str) -> str:
    return _english_normalizer()(text)


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Word error rate over the whole corpus (errors / reference words), normalised text."""
    import jiwer

    refs = [normalize_english(r) for r in references]
    hyps = [normalize_english(h) for h in hypotheses]
    keep = [i for i, r in enumerate(refs) if r.strip()]
    return float(jiwer.wer([refs[i] for i in keep], [hyps[i] for i in keep]))


# Languages written without spaces between words: scored by characters (CER), not words.
CHARACTER_SCORED = ("ja", "ko", "zh", "th", "yue")


def error_rate(reference: str, hypothesis: str, language: str) -> tuple[str, float]:
    """("WER" or "CER", rate) for one transcript in `language`. English: Whisper's English
    normaliser; other languages: Whisper's basic normaliser (lower case, punctuation and symbols
    to spaces, accents kept); ja/ko/zh/th: CER over the characters left once spaces go too."""
    import jiwer
    from whisper_normalizer.basic import BasicTextNormalizer

    if language == "en":
        ref, hyp = normalize_english(reference), normalize_english(hypothesis)
    else:
        basic = BasicTextNormalizer()
        ref, hyp = basic(reference), basic(hypothesis)
    if language in CHARACTER_SCORED:
        return "CER", float(jiwer.cer("".join(ref.split()), "".join(hyp.split())))
    return "WER", float(jiwer.wer(" ".join(ref.split()), " ".join(hyp.split())))


@dataclass(frozen=True)
class Reference:
    path: Path
    duration: float
    language: str
    text: str


def read_references(speech_dir: Path) -> list[Reference]:
    """Rows of shared/data/speech/references.tsv, paths made absolute."""
    with open(speech_dir / "references.tsv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [Reference(speech_dir / r["path"], float(r["duration_s"]), r["language"], r["transcript"]) for r in rows]


# --- diarization ---------------------------------------------------------------------------


def read_rttm(path: Path):
    """An RTTM file as a pyannote Annotation (all of its files' turns)."""
    from pyannote.core import Annotation
    from pyannote.core import Segment as Span

    annotation = Annotation()
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[0] == "SPEAKER":
            start, duration = float(parts[3]), float(parts[4])
            annotation[Span(start, start + duration)] = parts[7]
    return annotation


def annotation_of(turns):
    from pyannote.core import Annotation
    from pyannote.core import Segment as Span

    annotation = Annotation()
    for track, turn in enumerate(turns):  # a track per turn: overlapping turns stay apart
        if turn.end > turn.start:
            annotation[Span(turn.start, turn.end), track] = turn.speaker
    return annotation


def diarization_error_rate(reference, turns, collar: float = 0.0) -> float:
    """DER with pyannote.metrics; `collar` as pyannote defines it (total width around each
    reference boundary that is not scored)."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    return float(DiarizationErrorRate(collar=collar)(reference, annotation_of(turns)))


# --- word timing -------------------------------------------------------------------------


@dataclass(frozen=True)
class Utterance:
    start: float
    end: float
    speaker: str
    text: str


def read_stm(path: Path) -> list[Utterance]:
    rows = []
    for line in Path(path).read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) >= 6 and not line.startswith(";;"):
            rows.append(Utterance(float(parts[3]), float(parts[4]), parts[2], parts[5]))
    return sorted(rows, key=lambda u: u.start)


def boundary_errors(utterances: Sequence[Utterance], words) -> list[float]:
    """|hypothesis word time - known utterance boundary| at each utterance's start and end.

    Reference and hypothesis words are matched after normalisation (difflib); a boundary
    counts only when the utterance's first (last) word was matched to a hypothesis word.
    """
    from difflib import SequenceMatcher

    ref_tokens, ref_utt = [], []
    for u, utt in enumerate(utterances):
        tokens = normalize_english(utt.text).split()
        ref_tokens += tokens
        ref_utt += [u] * len(tokens)
    hyp_tokens, hyp_word = [], []
    for w, word in enumerate(words):
        tokens = normalize_english(word.word).split()
        hyp_tokens += tokens
        hyp_word += [w] * len(tokens)
    matched: dict[int, int] = {}
    for block in SequenceMatcher(None, ref_tokens, hyp_tokens, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            matched[block.a + k] = hyp_word[block.b + k]
    errors = []
    for u, utt in enumerate(utterances):
        positions = [i for i, owner in enumerate(ref_utt) if owner == u]
        if not positions:
            continue
        first, last = positions[0], positions[-1]
        if first in matched:
            errors.append(abs(words[matched[first]].start - utt.start))
        if last in matched:
            errors.append(abs(words[matched[last]].end - utt.end))
    return errors
