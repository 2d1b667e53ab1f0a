"""The batch job's OUTPUT folder: which keys its Parquet parts hold, and one copy of each.

A key can land in two parts: a killed job's Ray workers outlive its driver for a few seconds
and may still rename a finished batch into place after the rerun has listed what is done (the
rerun then does those files too); Ray Data retries a task whose node died after it wrote; and
`--retry-failed` writes a new row beside the error row it replaces. `deduplicate` keeps one
copy per key (a success over an error, then the latest written) and runs at the start and at
the end of every job: a finished job's OUTPUT holds each file once, unless a killed earlier
run's worker lands a batch after that job's end (the next run's start removes it).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

log = logging.getLogger("whisperx_serve.batch")


@dataclass
class Part:
    path: str
    # key -> (succeeded, latest processed_at in microseconds) of its rows in this part
    keys: dict[str, tuple[bool, int]] = field(default_factory=dict)


def _parts(output: str) -> tuple[object, list[Part]]:
    """The readable parts under OUTPUT (unreadable ones, which renaming complete files into
    place should never leave, are skipped: their files are redone)."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from cluster.inputs import filesystem_of

    fs, root = filesystem_of(output)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return fs, []
    parts = []
    for info in sorted(fs.get_file_info(pafs.FileSelector(root, recursive=False)), key=lambda i: i.path):
        name = info.base_name
        if info.type != pafs.FileType.File or not name.endswith(".parquet") or name.startswith("."):
            continue
        try:
            with fs.open_input_file(info.path) as f:
                table = pq.read_table(f, columns=["key", "error_code", "processed_at"])
        except Exception as exc:  # noqa: BLE001 - a damaged part only means its files are redone
            log.warning("skipping unreadable part %s: %s", info.path, exc)
            continue
        part = Part(info.path)
        times = table.column("processed_at").cast("int64").to_pylist()
        for key, error, at in zip(table.column("key").to_pylist(), table.column("error_code").to_pylist(), times):
            ok, latest = part.keys.get(key, (True, 0))
            part.keys[key] = (ok and error is None, max(latest, at))
        parts.append(part)
    return fs, parts


def done_keys(parts: list[Part], retry_failed: bool) -> set[str]:
    """Keys of the files the parts hold (with retry_failed, only those that succeeded)."""
    return {key for part in parts for key, (ok, _) in part.keys.items() if ok or not retry_failed}


@dataclass
class Holdings:
    parts: list[Part]  # as they are after deduplicating
    changed: int  # parts removed or rewritten


def deduplicate(output: str) -> Holdings:
    """Leaves one part holding each key."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    fs, parts = _parts(output)
    holders: dict[str, list[Part]] = defaultdict(list)
    for part in parts:
        for key in part.keys:
            holders[key].append(part)
    drop: dict[str, set[str]] = defaultdict(set)  # part path -> keys whose rows go
    for key, held in holders.items():
        if len(held) > 1:
            keep = max(held, key=lambda p: (*p.keys[key], p.path))
            for part in held:
                if part is not keep:
                    drop[part.path].add(key)
    kept_parts = []
    for part in parts:
        gone = drop.get(part.path, set())
        if gone != set(part.keys):
            kept_parts.append(Part(part.path, {k: v for k, v in part.keys.items() if k not in gone}))
        if not gone:
            continue
        if gone == set(part.keys):
            fs.delete_file(part.path)
        else:  # a batch of several files, some written again elsewhere: rewrite the rest
            with fs.open_input_file(part.path) as f:
                table = pq.read_table(f)
            kept = table.filter(pc.invert(pc.is_in(table.column("key"), value_set=_strings(gone))))
            directory, name = part.path.rsplit("/", 1)
            temporary = f"{directory}/.{name}.tmp"
            with fs.open_output_stream(temporary) as stream:
                pq.write_table(kept, stream)
            fs.move(temporary, part.path)
        log.warning("%s: removed %d row set(s) another part also holds", part.path, len(gone))
    return Holdings(kept_parts, len(drop))


def _strings(values: set[str]):
    import pyarrow as pa

    return pa.array(sorted(values), type=pa.string())
