"""The batch job's Parquet schemas: stable, explicit, documented in README.md.

Times are seconds from the start of the file. Nested results are JSON strings in WhisperX's
shape (stable across pyarrow/Ray versions and readable anywhere); flat columns cover the
common queries.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 2  # 2: speaker_turns

# Diarization's turns as they are: sorted by (start, end), overlapping where speakers overlap.
TURN = pa.struct([pa.field("start", pa.float64()), pa.field("end", pa.float64()), pa.field("speaker", pa.string())])

FILE_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),  # as listed in INPUT
        pa.field("content_sha256", pa.string()),  # of the file's bytes
        pa.field("key", pa.string(), nullable=False),  # content_sha256 + options digest
        pa.field("duration_s", pa.float64()),
        pa.field("language", pa.string()),
        pa.field("text", pa.string()),
        pa.field("num_segments", pa.int32()),
        pa.field("num_words", pa.int32()),
        pa.field("speakers", pa.list_(pa.string())),  # distinct speaker labels, if diarized
        pa.field("speaker_turns", pa.list_(TURN)),  # null when not diarized (or on an error row)
        pa.field("segments_json", pa.string()),  # WhisperX segments with words/speakers
        pa.field("asr_model", pa.string()),
        pa.field("align_model", pa.string()),
        pa.field("diarize_model", pa.string()),
        pa.field("options_json", pa.string()),  # the options the key digests
        pa.field("error_code", pa.string()),  # null when the file succeeded
        pa.field("error", pa.string()),
        pa.field("run_id", pa.string(), nullable=False),  # which run wrote the row
        pa.field("processed_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("schema_version", pa.int32(), nullable=False),
    ]
)

SEGMENT_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("content_sha256", pa.string()),
        pa.field("key", pa.string(), nullable=False),
        pa.field("segment_index", pa.int32()),  # null on an error row
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("text", pa.string()),
        pa.field("speaker", pa.string()),
        pa.field("words_json", pa.string()),  # [{word, start, end, score, speaker}]
        pa.field("language", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("asr_model", pa.string()),
        pa.field("error_code", pa.string()),
        pa.field("error", pa.string()),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("processed_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("schema_version", pa.int32(), nullable=False),
    ]
)
