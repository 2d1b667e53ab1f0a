"""Ray Data stages of the batch job: each executes its part of the plan the driver made, with
pipeline/ stages; none decides or re-implements anything.

Rows flow as dicts of numpy columns. A row whose file failed carries `error_code`/`error`
and passes through the later stages untouched, so one bad file never stops the job.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cached_property, partial

import numpy as np

from cluster.placement import from_ray
from cluster.schema import FILE_SCHEMA, SCHEMA_VERSION, SEGMENT_SCHEMA
from pipeline.align import Aligner
from pipeline.asr_models import AsrModels
from pipeline.audio import load_audio
from pipeline.cache_keys import batch_options, options_digest, row_key
from pipeline.config import PipelineConfig
from pipeline.diarize import Diarizer
from pipeline.errors import PipelineError
from pipeline.plan import Plan, run_sync
from pipeline.schema import Audio, Segment, Transcript
from pipeline.vad import SpeechDetector, cut


@dataclass(frozen=True)
class BatchJob:
    """A batch job's plan (made once, by the driver) and its output shape. Everything that
    decides a file's result is digested into the file's key."""

    plan: Plan
    per_segment: bool = False

    @property
    def config(self) -> PipelineConfig:
        return self.plan.config

    def options_json(self) -> str:
        return self._identity[0]

    @cached_property
    def _identity(self) -> tuple[str, str]:
        """(options_json, its digest): constant for the job, so worked out once, not per row."""
        options = batch_options(self.plan, self.per_segment, SCHEMA_VERSION)
        return options, options_digest(json.loads(options))


def file_key(content_sha256: str, job: BatchJob) -> str:
    return row_key(content_sha256, job._identity[1])


def hash_row(row: dict, job: BatchJob) -> dict:
    """read_binary_files row -> + content_sha256 and key."""
    digest = hashlib.sha256(row["bytes"]).hexdigest()
    return {**row, "content_sha256": digest, "key": file_key(digest, job)}


PREPROCESS_COLUMNS = "path content_sha256 key samples duration_s speech_json chunks_json error_code error".split()


class Preprocess:
    """Decode + VAD: audio bytes -> samples, speech regions and ASR chunk spans."""

    def __init__(self, job: BatchJob):
        self.limits = job.config.limits
        self.vad = SpeechDetector(job.config.vad, from_ray())
        self.vad_options = job.plan.vad  # the plan's regions (the configured VAD's, for a batch job)

    def __call__(self, batch: dict) -> dict:
        rows = []
        for i in range(len(batch["path"])):
            row = {k: batch[k][i] for k in ("path", "content_sha256", "key")}
            try:
                audio = load_audio(bytes(batch["bytes"][i]), self.limits)
                speech = self.vad.analyze(audio, self.vad_options)
            except PipelineError as exc:
                row.update(samples=np.zeros(0, dtype=np.float32), duration_s=None, speech_json="[]", chunks_json="[]")
                row.update(error_code=exc.code, error=str(exc))
            else:
                row.update(samples=audio.samples, duration_s=float(audio.duration), error_code=None, error=None)
                row.update(speech_json=json.dumps(speech.speech), chunks_json=json.dumps(speech.chunks))
            rows.append(row)
        return _columns({k: [row[k] for row in rows] for k in PREPROCESS_COLUMNS})


class Transcribe:
    """The plan's language, ASR and word-timing stages over a batch of files at once (chunks
    batched across files). Holds the models: the stage GPUs go to."""

    def __init__(self, job: BatchJob):
        self.job = job
        placement = from_ray()
        self.transcriber = AsrModels(job.config.asr, placement)
        self.aligner = Aligner(job.config.align, placement)

    def __call__(self, batch: dict) -> dict:
        n = len(batch["path"])
        out = {k: list(batch[k]) for k in batch}
        for column in ("language", "segments_json", "asr_model", "align_model", "diarize_model"):
            out[column] = [None] * n
        plans, chunks, options = {}, [], []
        for i in range(n):
            if _failed(batch, i):
                continue
            audio = Audio(np.asarray(batch["samples"][i], dtype=np.float32))
            spans = [tuple(c) for c in json.loads(batch["chunks_json"][i])]
            file_chunks = cut(audio, str(i), spans, json.loads(batch["speech_json"][i]))
            plan = run_sync(self.job.plan.detect_language(file_chunks, self._detect))
            plans[str(i)] = (i, audio, plan)
            chunks += file_chunks
            options += [plan.decode] * len(file_chunks)
        results: dict[str, list] = {k: [] for k in plans}
        for result in self.transcriber.transcribe_chunks(chunks, options) if chunks else []:
            results[result.audio_id].append(result)
        for audio_id, (i, audio, plan) in plans.items():
            try:
                align = partial(self.aligner.align, audio, language=plan.language)
                segments = run_sync(plan.timed_segments(results[audio_id], align))
            except PipelineError as exc:
                out["error_code"][i], out["error"][i] = exc.code, str(exc)
                continue
            models = plan.models()
            out["language"][i] = plan.language
            out["asr_model"][i], out["align_model"][i] = models["asr"], models.get("align")
            out["diarize_model"][i] = models.get("diarize")
            out["segments_json"][i] = json.dumps([asdict(s) for s in segments])
        if not self.job.plan.diarize:
            out.pop("samples")
        return _columns(out)

    def _detect(self, sample: list, model: str, candidates: tuple[str, ...]) -> tuple[str, float]:
        """The language step's means: (language, confidence) over the chunks the plan sampled."""
        return self.transcriber.detect_language(sample, model, candidates)


class Diarize:
    """The plan's diarization and merge stages: speaker turns from the audio alone, then
    speakers merged onto words and segments."""

    def __init__(self, job: BatchJob):
        self.job = job
        self.diarizer = Diarizer(job.config.diarize, from_ray())
        self.references = job.plan.speaker_references()  # checked when the job was planned

    def __call__(self, batch: dict) -> dict:
        out = {k: list(batch[k]) for k in batch if k != "samples"}
        out["speaker_turns_json"] = [None] * len(out["path"])
        for i in range(len(out["path"])):
            if _failed(batch, i):
                continue
            audio = Audio(np.asarray(batch["samples"][i], dtype=np.float32))
            speech = [tuple(r) for r in json.loads(batch["speech_json"][i])]
            plan = self.job.plan.with_language(out["language"][i])
            try:
                turns = self.diarizer.diarize(audio, speech, plan.speakers, self.references)
            except PipelineError as exc:
                out["error_code"][i], out["error"][i] = exc.code, str(exc)
                continue
            transcript = plan.assemble(audio.duration, _segments(out["segments_json"][i]), turns)
            out["segments_json"][i] = json.dumps([asdict(s) for s in transcript.segments])
            out["speaker_turns_json"][i] = json.dumps([asdict(t) for t in transcript.speaker_turns or []])
        return _columns(out)


@dataclass
class ParquetSink:
    """Writes each batch as one Parquet file under OUTPUT, atomically (written under a
    temporary name, then renamed), and returns one small summary row per file."""

    output: str
    job: BatchJob
    run_id: str

    def __call__(self, batch: dict) -> dict:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from cluster.inputs import filesystem_of

        now = datetime.now(UTC)
        files = [_file_row(batch, i, self.job, self.run_id, now, SCHEMA_VERSION) for i in range(len(batch["path"]))]
        if self.job.per_segment:
            table = pa.Table.from_pylist([r for f in files for r in _segment_rows(f)], schema=SEGMENT_SCHEMA)
        else:
            table = pa.Table.from_pylist(files, schema=FILE_SCHEMA)
        fs, root = filesystem_of(self.output)
        fs.create_dir(root, recursive=True)
        name = f"part-{self.run_id}-{uuid.uuid4().hex[:12]}.parquet"
        temporary, final = f"{root}/.{name}.tmp", f"{root}/{name}"
        with fs.open_output_stream(temporary) as stream:
            pq.write_table(table, stream)
        fs.move(temporary, final)
        return {
            "path": [f["path"] for f in files],
            "duration_s": [f["duration_s"] or 0.0 for f in files],
            "error_code": [f["error_code"] or "" for f in files],
            "part": [name] * len(files),
        }


def _file_row(batch: dict, i: int, job: BatchJob, run_id: str, now, version: int) -> dict:
    segments = _segments(_get(batch, "segments_json", i))
    duration = _number(batch["duration_s"][i])
    transcript = Transcript(segments=segments, language=_get(batch, "language", i) or "", duration=duration or 0.0)
    turns = _turns(_get(batch, "speaker_turns_json", i))
    speakers = sorted({s.speaker for s in segments if s.speaker} | {t["speaker"] for t in turns or []})
    error = _failed(batch, i)
    diarized = job.plan.diarize and not error
    return {
        "path": str(batch["path"][i]),
        "content_sha256": batch["content_sha256"][i],
        "key": batch["key"][i],
        "duration_s": duration,
        "language": None if error else transcript.language,
        "text": None if error else transcript.text,
        "num_segments": None if error else len(segments),
        "num_words": None if error else len(transcript.words),
        "speakers": speakers if diarized else None,
        "speaker_turns": turns if diarized else None,
        "segments_json": None if error else json.dumps(transcript.to_dict()["segments"], ensure_ascii=False),
        **{k: _get(batch, k, i) for k in ("asr_model", "align_model", "diarize_model", "error_code", "error")},
        "options_json": job.options_json(),
        "run_id": run_id,
        "processed_at": now,
        "schema_version": version,
    }


SEGMENT_FIELDS = ("segment_index", "start_s", "end_s", "text", "speaker", "words_json")  # the rest: the file's


def _segment_rows(f: dict) -> list[dict]:
    common = {k: f[k] for k in SEGMENT_SCHEMA.names if k not in SEGMENT_FIELDS}
    # An error row, or a file without speech, is still one row, so a rerun finds its key.
    if f["error_code"] is not None or not json.loads(f["segments_json"] or "[]"):
        return [{**common, **dict.fromkeys(SEGMENT_FIELDS)}]
    return [
        {
            **common,
            "segment_index": k,
            "start_s": s["start"],
            "end_s": s["end"],
            "text": s["text"],
            "speaker": s.get("speaker"),
            "words_json": json.dumps(s.get("words", []), ensure_ascii=False),
        }
        for k, s in enumerate(json.loads(f["segments_json"]))
    ]


def _segments(raw: str | None) -> list[Segment]:
    return [Segment.from_dict(s) for s in json.loads(raw)] if raw else []


def _turns(raw: str | None) -> list[dict] | None:
    """The Diarize stage's turns, as the Parquet column's structs (None: not diarized)."""
    if raw is None:
        return None
    return [{"start": float(t["start"]), "end": float(t["end"]), "speaker": str(t["speaker"])} for t in json.loads(raw)]


def _get(batch: dict, column: str, i: int) -> str | None:
    """A string cell, or None. Ray Data turns an all-None column into float NaNs."""
    values = batch.get(column)
    value = None if values is None else values[i]
    return value if isinstance(value, str) else None


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) else number


def _failed(batch: dict, i: int) -> bool:
    return _get(batch, "error_code", i) is not None


def _columns(out: dict) -> dict:
    """Lists -> object columns, one cell per value (sample arrays, ragged or not, stay one cell each)."""
    columns = {}
    for k, values in out.items():
        columns[k] = np.empty(len(values), dtype=object)
        columns[k][:] = values
    return columns


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + os.urandom(3).hex()
