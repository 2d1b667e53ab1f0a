"""Offline sentence-splitter data for whisperx's alignment step.

whisperx.align loads NLTK's `punkt_tab/<language>` parameters and calls nltk.download when
they are missing, which fails offline. When NLTK has no such data, this writes a small
parameter set of our own (a list of common abbreviations, so "Dr. Smith" is not split) to a
cache folder and puts it on NLTK's search path. Installed NLTK data, when present, wins.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

# Lower-case, without the final period, as Punkt stores them.
ENGLISH_ABBREVIATIONS = sorted(
    """
    mr mrs ms dr prof sr jr st mt ft gen col lt sgt capt gov sen rep rev hon messrs vs etc e.g i.e cf al approx
    dept univ inc ltd co corp no nos vol vols fig figs ed eds p pp
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun u.s u.k a.m p.m ph.d
    """.split()
)
PARAMETER_FILES = ("collocations.tab", "sent_starters.txt", "ortho_context.tab")


def data_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "whisperx-serve" / "nltk_data"


_WRITING = threading.Lock()  # concurrent alignment calls must not write the files at once


def ensure_punkt(languages: list[str] | None = None) -> None:
    """Make `tokenizers/punkt_tab/<language>/` findable by NLTK for each language."""
    import nltk
    from whisperx.utils import PUNKT_LANGUAGES

    names = sorted(set(languages or PUNKT_LANGUAGES.values()) | {"english"})
    with _WRITING:
        missing = [n for n in names if not _findable(nltk, n)]
        if not missing:
            return
        root = data_root()
        for name in missing:
            folder = root / "tokenizers" / "punkt_tab" / name
            folder.mkdir(parents=True, exist_ok=True)
            for file in PARAMETER_FILES:
                (folder / file).touch()
            abbreviations = ENGLISH_ABBREVIATIONS if name == "english" else []
            (folder / "abbrev_types.txt").write_text("".join(f"{a}\n" for a in abbreviations))
        if str(root) not in nltk.data.path:
            nltk.data.path.append(str(root))


def _findable(nltk, name: str) -> bool:
    try:
        nltk.data.find(f"tokenizers/punkt_tab/{name}/")
        return True
    except LookupError:
        return False
