"""cluster.inputs.list_inputs on temporary folders: folders, globs, CSV and Parquet manifests."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from cluster.inputs import AUDIO_EXTENSIONS, list_inputs
from pipeline.errors import InvalidOption


def _touch(path, data: bytes = b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "audio"
    files = {
        "a": _touch(root / "a.wav"),
        "b": _touch(root / "b.FLAC"),
        "c": _touch(root / "nested" / "deeper" / "c.mp3"),
        "d": _touch(root / "nested" / "d.m4a"),
    }
    _touch(root / "notes.txt")
    _touch(root / "nested" / "cover.jpg")
    _touch(root / "wav")  # no extension at all
    return root, files


def test_folder_recurses_and_filters_by_extension(tree):
    root, files = tree
    fs, paths = list_inputs(str(root))
    assert isinstance(fs, pafs.LocalFileSystem)
    assert paths == sorted(files.values())
    assert not any(p.endswith((".txt", ".jpg", "/wav")) for p in paths)


def test_folder_given_as_relative_path(tree, monkeypatch):
    root, files = tree
    monkeypatch.chdir(root.parent)
    _, paths = list_inputs("audio")
    assert paths == sorted(files.values())


def test_single_file(tree):
    root, files = tree
    assert list_inputs(files["a"])[1] == [files["a"]]


def test_glob(tree):
    root, files = tree
    _touch(root / "take1.wav")
    _touch(root / "take2.wav")
    _touch(root / "take3.txt")
    _, paths = list_inputs(str(root / "take*.wav"))
    assert paths == [str(root / "take1.wav"), str(root / "take2.wav")]


def test_glob_with_character_class(tree):
    root, files = tree
    _, paths = list_inputs(str(root / "[ab].*"))
    assert paths == [files["a"], files["b"]]


def test_glob_matching_nothing(tree):
    root, _ = tree
    with pytest.raises(InvalidOption, match="no audio files"):
        list_inputs(str(root / "*.opus"))


def test_csv_manifest(tmp_path):
    folder = tmp_path / "lists"
    folder.mkdir()
    manifest = folder / "manifest.csv"
    manifest.write_text('path,speaker\nclips/a.wav,ann\n"   ",bob\n,carl\n/data/abs/b.wav,dan\n  rel.flac  ,eve\n')
    fs, paths = list_inputs(str(manifest))
    assert isinstance(fs, pafs.LocalFileSystem)
    assert paths == [str(folder / "clips" / "a.wav"), "/data/abs/b.wav", str(folder / "rel.flac")]


def test_parquet_manifest(tmp_path):
    manifest = tmp_path / "m" / "files.parquet"
    manifest.parent.mkdir()
    pq.write_table(pa.table({"path": ["x/one.wav", None, "", "/abs/two.mp3"], "n": [1, 2, 3, 4]}), manifest)
    _, paths = list_inputs(str(manifest))
    assert paths == [str(manifest.parent / "x" / "one.wav"), "/abs/two.mp3"]


def test_manifest_keeps_uri_paths(tmp_path):
    manifest = tmp_path / "m.parquet"
    pq.write_table(pa.table({"path": [f"file://{tmp_path}/sub/a.wav"]}), manifest)
    assert list_inputs(str(manifest))[1] == [f"{tmp_path}/sub/a.wav"]


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_manifest_without_path_column(tmp_path, suffix):
    manifest = tmp_path / f"m.{suffix}"
    if suffix == "csv":
        manifest.write_text("file,speaker\na.wav,ann\n")
    else:
        pq.write_table(pa.table({"file": ["a.wav"]}), manifest)
    with pytest.raises(InvalidOption, match="'path' column") as info:
        list_inputs(str(manifest))
    assert "file" in str(info.value), "the message lists the columns it has"


def test_nonexistent_input(tmp_path):
    with pytest.raises(InvalidOption, match="does not exist"):
        list_inputs(str(tmp_path / "missing"))


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidOption, match="no audio files"):
        list_inputs(str(tmp_path / "empty"))


def test_folder_with_only_non_audio(tmp_path):
    _touch(tmp_path / "only" / "notes.txt")
    with pytest.raises(InvalidOption):
        list_inputs(str(tmp_path / "only"))


def test_every_listed_extension_is_found(tmp_path):
    expected = [_touch(tmp_path / "all" / f"f{i}{ext}") for i, ext in enumerate(AUDIO_EXTENSIONS)]
    assert list_inputs(str(tmp_path / "all"))[1] == sorted(expected)
