"""Accuracy measures shared by tests and benchmarks.

WER uses Whisper's English text normaliser (package whisper-normalizer) and jiwer, both
installed with the `test` extra.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence


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
    return [Reference(speech_dir / r["path"], float(r["duration_s"]), r["language"], r["transcript"])
            for r in rows]
