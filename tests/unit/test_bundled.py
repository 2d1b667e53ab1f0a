"""pipeline.bundled._assemble on a fake split layout: no packages, no model load."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipeline.bundled import STAMP_NAME, _assemble
from pipeline.errors import ModelNotFound


def _layout(tmp_path: Path, part_bytes: list[bytes]) -> tuple[list[Path], list[Path]]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    parts = []
    for i, data in enumerate(part_bytes, 1):
        p = src / f"model.bin.part{i}"
        p.write_bytes(data)
        parts.append(p)
    small = []
    for name, text in (("config.json", '{"lang_ids": []}'), ("tokenizer.json", "{}"), ("vocabulary.json", "[]")):
        (src / name).write_text(text)
        small.append(src / name)
    return parts, small


def test_concatenates_parts_in_order_and_writes_stamp(tmp_path):
    chunks = [b"A" * 5_000_000, b"", b"xyz"]  # first part spans several read chunks
    parts, small = _layout(tmp_path, chunks)
    target = tmp_path / "cache" / "base-1.0.0"

    assert _assemble(parts, small, target) == target

    whole = b"".join(chunks)
    assert (target / "model.bin").read_bytes() == whole
    assert (target / "config.json").read_text() == '{"lang_ids": []}'
    assert (target / "vocabulary.json").is_file() and (target / "tokenizer.json").is_file()
    stamp = json.loads((target / STAMP_NAME).read_text())
    assert stamp["parts"] == [{"name": p.name, "size": len(c)} for p, c in zip(parts, chunks, strict=True)]
    assert stamp["model_bin"] == {"size": len(whole), "sha256": hashlib.sha256(whole).hexdigest()}
    assert sorted(f.name for f in target.iterdir()) == sorted(
        [STAMP_NAME, "model.bin", "config.json", "tokenizer.json", "vocabulary.json"]
    ), "no temp files left behind"


def test_reuses_when_unchanged_and_rebuilds_when_a_part_size_changes(tmp_path):
    parts, small = _layout(tmp_path, [b"one-", b"two"])
    target = tmp_path / "out"
    _assemble(parts, small, target)
    model = target / "model.bin"
    before = model.stat().st_mtime_ns, model.stat().st_ino

    _assemble(parts, small, target)
    assert (model.stat().st_mtime_ns, model.stat().st_ino) == before, "unchanged parts: reused, not rewritten"

    parts[1].write_bytes(b"two-longer")
    _assemble(parts, small, target)
    assert model.read_bytes() == b"one-two-longer"
    assert json.loads((target / STAMP_NAME).read_text())["parts"][1]["size"] == len(b"two-longer")


def test_rebuilds_when_model_bin_missing_or_truncated(tmp_path):
    parts, small = _layout(tmp_path, [b"abc", b"def"])
    target = tmp_path / "out"
    _assemble(parts, small, target)
    (target / "model.bin").write_bytes(b"abc")  # e.g. a crash or a manual edit
    _assemble(parts, small, target)
    assert (target / "model.bin").read_bytes() == b"abcdef"
    (target / "model.bin").unlink()
    _assemble(parts, small, target)
    assert (target / "model.bin").read_bytes() == b"abcdef"


def test_part_checksum_mismatch_raises_and_leaves_no_model(tmp_path):
    parts, small = _layout(tmp_path, [b"abc", b"def"])
    target = tmp_path / "out"
    sums = {"model.bin.part1": hashlib.sha256(b"abc").hexdigest(), "model.bin.part2": hashlib.sha256(b"X").hexdigest()}
    with pytest.raises(ModelNotFound, match="part2"):
        _assemble(parts, small, target, part_sha256=sums)
    assert not (target / "model.bin").exists() and not (target / STAMP_NAME).exists()
    assert not list(target.glob("*.tmp"))
