"""What a batch job reads: a folder, a glob, or a Parquet/CSV manifest with a `path` column;
local paths or any URI pyarrow's filesystems read (s3://, gs://, hdfs://)."""

from __future__ import annotations

import fnmatch
import posixpath

import pyarrow.fs as pafs

from pipeline.errors import InvalidOption

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".mp4", ".aac", ".webm", ".wma")


def filesystem_of(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    import os

    return pafs.LocalFileSystem(), os.path.abspath(uri)


def list_inputs(source: str) -> tuple[pafs.FileSystem, list[str]]:
    """(filesystem, sorted audio paths) for a folder, glob or manifest."""
    fs, path = filesystem_of(source)
    if path.endswith((".parquet", ".csv")):
        return fs, _manifest(fs, path)
    if any(ch in path for ch in "*?["):
        root = path[: min(path.find(ch) for ch in "*?[" if ch in path)]
        root = root if root.endswith("/") else posixpath.dirname(root)
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        paths = [i.path for i in infos if i.type == pafs.FileType.File and fnmatch.fnmatch(i.path, path)]
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise InvalidOption(f"input {source!r} does not exist")
        if info.type == pafs.FileType.File:
            paths = [path]
        else:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
            paths = [
                i.path for i in infos if i.type == pafs.FileType.File and i.path.lower().endswith(AUDIO_EXTENSIONS)
            ]
    if not paths:
        raise InvalidOption(f"no audio files found in {source!r} (extensions: {', '.join(AUDIO_EXTENSIONS)})")
    return fs, sorted(paths)


def _manifest(fs: pafs.FileSystem, path: str) -> list[str]:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    with fs.open_input_file(path) as f:
        table = pq.read_table(f) if path.endswith(".parquet") else pacsv.read_csv(f)
    if "path" not in table.column_names:
        raise InvalidOption(f"manifest {path} needs a 'path' column; it has {', '.join(table.column_names)}")
    base = posixpath.dirname(path)
    out = []
    for p in table.column("path").to_pylist():
        if p is None or not str(p).strip():
            continue
        p = str(p).strip()
        if "://" in p:  # a URI on the manifest's filesystem: keep the path part
            out.append(pafs.FileSystem.from_uri(p)[1])
        elif p.startswith("/"):
            out.append(p)
        else:  # relative to the manifest's folder
            out.append(posixpath.join(base, p))
    return out
