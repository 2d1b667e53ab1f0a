"""cluster.output_parts on hand-written Parquet parts (no Ray): one copy per key survives a
late part from a killed run, a retried failure and a multi-file batch written twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from cluster.output_parts import deduplicate, done_keys
from cluster.schema import FILE_SCHEMA, SCHEMA_VERSION, SEGMENT_SCHEMA

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def row(key: str, run: str, minute: int, error: str | None = None) -> dict:
    return {
        "path": f"/in/{key}.wav",
        "key": key,
        "text": None if error else f"text of {key} by {run}",
        "error_code": error,
        "run_id": run,
        "processed_at": T0 + timedelta(minutes=minute),
        "schema_version": SCHEMA_VERSION,
    }


def write(folder, name: str, rows: list[dict], schema=FILE_SCHEMA) -> None:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / f"part-{name}.parquet")


def texts(folder) -> dict[str, list[str]]:
    table = pq.read_table(str(folder))
    out: dict[str, list[str]] = {}
    for key, text in zip(table.column("key").to_pylist(), table.column("text").to_pylist()):
        out.setdefault(key, []).append(text)
    return out


def test_a_killed_runs_late_part_and_a_retried_failure_leave_one_copy(tmp_path):
    write(tmp_path, "first-a", [row("a", "first", 0)])
    write(tmp_path, "first-b", [row("b", "first", 1, error="audio_undecodable")])
    # The killed run's worker renamed `c` into place after the rerun had listed what was done.
    assert done_keys(deduplicate(str(tmp_path)).parts, retry_failed=True) == {"a"}
    assert done_keys(deduplicate(str(tmp_path)).parts, retry_failed=False) == {"a", "b"}
    write(tmp_path, "killed-c", [row("c", "killed", 2)])
    write(tmp_path, "rerun-bc", [row("b", "rerun", 5), row("c", "rerun", 5), row("d", "rerun", 5)])

    assert deduplicate(str(tmp_path)).changed == 2
    assert texts(tmp_path) == {
        "a": ["text of a by first"],
        "b": ["text of b by rerun"],  # the success replaces the error row
        "c": ["text of c by rerun"],  # the latest copy
        "d": ["text of d by rerun"],
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-first-a.parquet", "part-rerun-bc.parquet"]
    assert deduplicate(str(tmp_path)).changed == 0  # idempotent


def test_a_part_keeps_its_other_files_and_an_error_never_replaces_a_success(tmp_path):
    write(tmp_path, "old", [row("a", "old", 0), row("b", "old", 0)])
    write(tmp_path, "new", [row("b", "new", 3, error="audio_undecodable"), row("c", "new", 3)])
    write(tmp_path, "late", [row("a", "late", 4)])
    assert deduplicate(str(tmp_path)).changed == 2
    assert texts(tmp_path) == {"a": ["text of a by late"], "b": ["text of b by old"], "c": ["text of c by new"]}
    assert pq.read_table(tmp_path / "part-old.parquet").column("key").to_pylist() == ["b"]  # rewritten in place
    assert pq.read_table(tmp_path / "part-new.parquet").column("key").to_pylist() == ["c"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_per_segment_parts_move_a_files_rows_together(tmp_path):
    def segments(key: str, run: str, minute: int) -> list[dict]:
        return [{**row(key, run, minute), "segment_index": i} for i in range(3)]

    write(tmp_path, "one", segments("a", "one", 0) + segments("b", "one", 0), SEGMENT_SCHEMA)
    write(tmp_path, "two", segments("a", "two", 1), SEGMENT_SCHEMA)
    assert deduplicate(str(tmp_path)).changed == 1
    assert texts(tmp_path) == {"a": ["text of a by two"] * 3, "b": ["text of b by one"] * 3}


def test_no_output_yet(tmp_path):
    none = deduplicate(str(tmp_path / "none"))
    assert none.changed == 0 and done_keys(none.parts, False) == set()
