"""cluster.stages' row helpers and keys: Parquet rows from hand-made batches (no Ray, no models)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from cluster.schema import FILE_SCHEMA, SCHEMA_VERSION, SEGMENT_SCHEMA
from cluster.stages import BatchJob, _file_row, _segment_rows, _segments, file_key, hash_row
from pipeline.align import AlignConfig
from pipeline.asr import AsrConfig
from pipeline.cache_keys import KEY_VERSION, options_digest, result_options
from pipeline.config import PipelineConfig
from pipeline.diarize import SpeakerCount
from pipeline.models import AsrCard
from pipeline.plan import Planner, Request
from pipeline.schema import Segment, Word

CARD = AsrCard("bundled/tiny.en", False, ("en",))
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SHA = "ab" * 32


def job(
    request: Request = Request(),
    per_segment: bool = False,
    config: PipelineConfig = PipelineConfig(),
    card: AsrCard = CARD,
):
    return BatchJob(Planner(config, card).plan(request), per_segment=per_segment)


SEGMENTS = [
    Segment(0.0, 1.5, " Hello there.", [Word("Hello", 0.0, 0.6, 0.9), Word("there.", 0.7, 1.5, 0.8)], -0.2),
    Segment(2.0, 3.0, " Bye.", [Word("Bye.", 2.0, 3.0, interpolated=True)], -0.4),
]


def with_speakers(segments: list[Segment], speakers: list[str]) -> list[Segment]:
    out = []
    for seg, speaker in zip(segments, speakers, strict=True):
        words = [Word(**{**asdict(w), "speaker": speaker}) for w in seg.words]
        out.append(Segment(seg.start, seg.end, seg.text, words, seg.avg_logprob, speaker))
    return out


def column(*values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def batch(
    segments: list[Segment] | None = None, error: tuple[str, str] | None = None, turns: list[dict] | None = None
) -> dict:
    """One row as Ray Data hands it to the sink: object columns; error columns all-None -> NaN.
    `turns`: the Diarize stage's speaker_turns_json column (absent when the job does not diarize)."""
    ok = error is None
    segments = SEGMENTS if segments is None else segments
    extra = {} if turns is None else {"speaker_turns_json": column(json.dumps(turns) if ok else float("nan"))}
    return {
        **extra,
        "path": column("/in/a.wav"),
        "content_sha256": column(SHA),
        "key": column(f"{SHA}-digest"),
        "duration_s": column(3.5 if ok else float("nan")),
        "language": column("en" if ok else float("nan")),
        "segments_json": column(json.dumps([asdict(s) for s in segments]) if ok else float("nan")),
        "asr_model": column("bundled/tiny.en" if ok else float("nan")),
        "align_model": column("whisper-cross-attention" if ok else float("nan")),
        "diarize_model": column(float("nan")),
        "error_code": column(float("nan") if ok else error[0]),
        "error": column(float("nan") if ok else error[1]),
    }


# --- _file_row ---------------------------------------------------------------------------------


def test_success_row():
    j = job()
    row = _file_row(batch(), 0, j, "run-1", NOW, SCHEMA_VERSION)
    assert row["path"] == "/in/a.wav"
    assert row["content_sha256"] == SHA and row["key"] == f"{SHA}-digest"
    assert row["duration_s"] == 3.5
    assert row["language"] == "en"
    assert row["text"] == "Hello there. Bye."
    assert row["num_segments"] == 2
    assert row["num_words"] == 3
    assert row["speakers"] is None, "no diarization in this job"
    assert row["asr_model"] == "bundled/tiny.en"
    assert row["align_model"] == "whisper-cross-attention"
    assert row["diarize_model"] is None, "a NaN cell reads as null"
    assert row["error_code"] is None and row["error"] is None
    assert row["options_json"] == j.options_json()
    assert (row["run_id"], row["processed_at"], row["schema_version"]) == ("run-1", NOW, SCHEMA_VERSION)


def test_success_row_segments_json_is_whisperx_shaped():
    row = _file_row(batch(), 0, job(), "r", NOW, SCHEMA_VERSION)
    segments = json.loads(row["segments_json"])
    assert [s["text"] for s in segments] == [" Hello there.", " Bye."]
    assert segments[0]["words"][0] == {"word": "Hello", "start": 0.0, "end": 0.6, "score": 0.9}
    assert segments[1]["words"][0] == {"word": "Bye.", "start": 2.0, "end": 3.0, "interpolated": True}
    assert "speaker" not in segments[0], "None fields are dropped"


def test_speakers_only_when_the_plan_diarizes():
    diarized = with_speakers(SEGMENTS, ["SPEAKER_01", "SPEAKER_00"])
    row = _file_row(batch(diarized), 0, job(Request(diarize=True)), "r", NOW, SCHEMA_VERSION)
    assert row["speakers"] == ["SPEAKER_00", "SPEAKER_01"]
    assert json.loads(row["segments_json"])[0]["speaker"] == "SPEAKER_01"
    by_count = _file_row(batch(diarized), 0, job(Request(speakers=SpeakerCount(num_speakers=2))), "r", NOW, 1)
    assert by_count["speakers"] == ["SPEAKER_00", "SPEAKER_01"]
    plain = _file_row(batch(diarized), 0, job(), "r", NOW, SCHEMA_VERSION)
    assert plain["speakers"] is None


TURNS = [
    {"start": 0.0, "end": 1.6, "speaker": "SPEAKER_01"},
    {"start": 1.4, "end": 3.0, "speaker": "SPEAKER_00"},  # overlaps the first
    {"start": 3.1, "end": 3.4, "speaker": "SPEAKER_02"},  # "mm-hm": no word
]


def test_speaker_turns_column():
    diarized = with_speakers(SEGMENTS, ["SPEAKER_01", "SPEAKER_00"])
    row = _file_row(batch(diarized, turns=TURNS), 0, job(Request(diarize=True)), "r", NOW, SCHEMA_VERSION)
    assert row["speaker_turns"] == TURNS
    assert row["speakers"] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_02"], "a speaker without words counts"
    assert _file_row(batch([], turns=[]), 0, job(Request(diarize=True)), "r", NOW, 2)["speaker_turns"] == []
    assert _file_row(batch(), 0, job(), "r", NOW, SCHEMA_VERSION)["speaker_turns"] is None, "not diarized"
    failed = batch(error=("audio_empty", "empty"), turns=TURNS)  # the column all NaN in this block
    assert _file_row(failed, 0, job(Request(diarize=True)), "r", NOW, SCHEMA_VERSION)["speaker_turns"] is None


def test_speaker_turns_fit_the_file_schema_in_every_kind_of_block():
    """Every part has FILE_SCHEMA, whether its block diarized, failed or neither: a list of
    structs, null when not diarized."""
    diarize = job(Request(diarize=True))
    blocks = [
        [_file_row(batch(turns=TURNS), 0, diarize, "r", NOW, SCHEMA_VERSION)],
        [_file_row(batch(error=("audio_empty", "empty"), turns=TURNS), 0, diarize, "r", NOW, SCHEMA_VERSION)],
        [_file_row(batch(), 0, job(), "r", NOW, SCHEMA_VERSION)],
    ]
    tables = [pa.Table.from_pylist(rows, schema=FILE_SCHEMA) for rows in blocks]
    assert all(t.schema.equals(FILE_SCHEMA) for t in tables)
    assert FILE_SCHEMA.field("speaker_turns").type == pa.list_(
        pa.struct([("start", pa.float64()), ("end", pa.float64()), ("speaker", pa.string())])
    )
    column = pa.concat_tables(tables).column("speaker_turns").to_pylist()
    assert column == [TURNS, None, None]


def test_diarized_row_with_no_speech_has_an_empty_speaker_list():
    row = _file_row(batch([]), 0, job(Request(diarize=True)), "r", NOW, SCHEMA_VERSION)
    assert row["speakers"] == []
    assert row["num_segments"] == 0 and row["num_words"] == 0 and row["text"] == ""


def test_error_row():
    j = job(Request(diarize=True))
    row = _file_row(batch(error=("audio_undecodable", "cannot decode")), 0, j, "r", NOW, SCHEMA_VERSION)
    assert row["error_code"] == "audio_undecodable" and row["error"] == "cannot decode"
    for name in ("duration_s", "language", "text", "num_segments", "num_words", "speakers", "segments_json",
                 "asr_model", "align_model", "diarize_model"):  # fmt: skip
        assert row[name] is None, name
    assert row["path"] == "/in/a.wav" and row["key"] == f"{SHA}-digest"
    assert row["options_json"] == j.options_json()


def test_rows_fit_the_file_schema():
    rows = [
        _file_row(batch(), 0, job(), "r", NOW, SCHEMA_VERSION),
        _file_row(batch(error=("audio_empty", "empty")), 0, job(), "r", NOW, SCHEMA_VERSION),
    ]
    table = pa.Table.from_pylist(rows, schema=FILE_SCHEMA)
    assert table.num_rows == 2
    assert table.column("error_code").to_pylist() == [None, "audio_empty"]


# --- _segment_rows -----------------------------------------------------------------------------


def test_segment_rows_one_per_segment():
    diarized = with_speakers(SEGMENTS, ["SPEAKER_00", "SPEAKER_01"])
    f = _file_row(batch(diarized), 0, job(Request(diarize=True)), "r", NOW, SCHEMA_VERSION)
    rows = _segment_rows(f)
    assert [r["segment_index"] for r in rows] == [0, 1]
    assert [(r["start_s"], r["end_s"]) for r in rows] == [(0.0, 1.5), (2.0, 3.0)]
    assert [r["text"] for r in rows] == [" Hello there.", " Bye."]
    assert [r["speaker"] for r in rows] == ["SPEAKER_00", "SPEAKER_01"]
    words = json.loads(rows[0]["words_json"])
    assert [w["word"] for w in words] == ["Hello", "there."]
    assert all(w["speaker"] == "SPEAKER_00" for w in words)
    for r in rows:
        assert (r["path"], r["key"], r["language"], r["duration_s"]) == ("/in/a.wav", f"{SHA}-digest", "en", 3.5)
        assert r["error_code"] is None
    assert pa.Table.from_pylist(rows, schema=SEGMENT_SCHEMA).num_rows == 2


def test_segment_rows_without_speakers():
    rows = _segment_rows(_file_row(batch(), 0, job(), "r", NOW, SCHEMA_VERSION))
    assert [r["speaker"] for r in rows] == [None, None]


def test_segment_rows_of_an_error_file():
    f = _file_row(batch(error=("audio_too_long", "too long")), 0, job(), "r", NOW, SCHEMA_VERSION)
    (row,) = _segment_rows(f)
    assert row["segment_index"] is None
    assert row["text"] is None and row["words_json"] is None and row["start_s"] is None
    assert row["error_code"] == "audio_too_long" and row["error"] == "too long"
    assert pa.Table.from_pylist([row], schema=SEGMENT_SCHEMA).num_rows == 1


def test_segment_rows_of_a_file_without_speech():
    (row,) = _segment_rows(_file_row(batch([]), 0, job(), "r", NOW, SCHEMA_VERSION))
    assert row["segment_index"] is None and row["error_code"] is None


# --- _segments ---------------------------------------------------------------------------------


def test_segments_round_trip():
    diarized = with_speakers(SEGMENTS, ["SPEAKER_00", "SPEAKER_01"])
    assert _segments(json.dumps([asdict(s) for s in diarized])) == diarized
    assert _segments(None) == [] and _segments("") == []


# --- keys --------------------------------------------------------------------------------------


def test_hash_row_adds_content_hash_and_key():
    j = job()
    row = hash_row({"path": "/in/a.wav", "bytes": b"RIFF-audio"}, j)
    digest = hashlib.sha256(b"RIFF-audio").hexdigest()
    assert row["content_sha256"] == digest
    assert row["key"] == file_key(digest, j) == f"{digest}-{options_digest(json.loads(j.options_json()))}"
    assert row["path"] == "/in/a.wav" and row["bytes"] == b"RIFF-audio"


def test_key_depends_on_content():
    j = job()
    assert hash_row({"bytes": b"a"}, j)["key"] != hash_row({"bytes": b"b"}, j)["key"]


@pytest.mark.parametrize(
    "changed",
    [
        Request(temperature=0.5),
        Request(beam_size=2),
        Request(initial_prompt="Ada"),
        Request(diarize=True),
        Request(speakers=SpeakerCount(max_speakers=2)),
    ],
    ids=["temperature", "beam", "prompt", "diarize", "speakers"],
)
def test_key_changes_with_result_options(changed):
    assert file_key(SHA, job(changed)) != file_key(SHA, job())


def test_key_changes_with_the_language_on_a_multilingual_model():
    multi = AsrCard("large-v3-turbo", True, ("en", "de"))
    detected = file_key(SHA, job(card=multi))
    assert file_key(SHA, job(Request(language="de"), card=multi)) != detected
    assert file_key(SHA, job(Request(language="en"), card=multi)) != detected
    assert file_key(SHA, job(Request(language="DE"), card=multi)) == file_key(
        SHA, job(Request(language="de"), card=multi)
    )


def test_key_is_the_same_for_requests_planned_alike():
    base = file_key(SHA, job())
    assert file_key(SHA, job(Request(language="en"))) == base, "an English-only model plans en anyway"
    assert file_key(SHA, job(Request(initial_prompt=""))) == base
    assert file_key(SHA, job(Request(align=False))) == base, "no align model configured"


def test_key_changes_with_align_only_when_an_align_model_is_configured():
    aligned = PipelineConfig(align=AlignConfig(model="default"))
    assert file_key(SHA, job(Request(align=False), config=aligned)) != file_key(SHA, job(config=aligned))
    assert file_key(SHA, job(config=aligned)) != file_key(SHA, job())


def test_key_changes_with_the_model_card_not_the_configured_name():
    assert file_key(SHA, job(card=AsrCard("bundled/base.en", False, ("en",)))) != file_key(SHA, job())
    same_model = job(config=PipelineConfig(asr=AsrConfig(model="tiny.en")))
    assert file_key(SHA, same_model) == file_key(SHA, job())


def test_key_ignores_output_format():
    base = file_key(SHA, job())
    assert file_key(SHA, job(Request(response_format="srt"))) == base
    assert file_key(SHA, job(Request(response_format="vtt"))) == base


def test_per_segment_is_part_of_the_key_by_design():
    assert file_key(SHA, job(per_segment=True)) != file_key(SHA, job(per_segment=False))
    assert json.loads(job(per_segment=True).options_json())["per_segment"] is True


def test_options_json_is_canonical_and_digested():
    j = job(Request(temperature=0.3))
    options = json.loads(j.options_json())
    assert options == {
        **result_options(j.plan),
        "per_segment": False,
        "key_version": KEY_VERSION,
        "schema_version": SCHEMA_VERSION,
    }
    assert options["decode"]["temperature"] == 0.3
    assert options["asr_model"] == "bundled/tiny.en"
    assert j.options_json() == json.dumps(options, sort_keys=True)
    assert file_key(SHA, j) == file_key(SHA, job(Request(temperature=0.3)))
    assert len(file_key(SHA, j)) == len(SHA) + 1 + 16
