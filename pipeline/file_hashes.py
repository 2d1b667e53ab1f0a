"""Sha256 of model files, computed once per process: the ASR weights' fingerprint
(pipeline/models.py) and the bundled model's integrity stamp (pipeline/bundled.py) share it."""

from __future__ import annotations

import hashlib
from pathlib import Path

_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, computed once per process for each (path, size, mtime)."""
    key = _file_key(path)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(8 << 20):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def remember_file_sha256(path: Path, hexdigest: str) -> None:
    """Record a digest computed while writing `path` (so it is not read again to fingerprint it)."""
    _DIGESTS[_file_key(path)] = hexdigest
