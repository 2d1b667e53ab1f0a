"""Ray Data stages of the batch job. Each wraps pipeline/ stages; none re-implements them.

Rows flow as dicts of numpy columns. A row whose file failed carries `error_code`/`error`
and passes through the later stages untouched, so one bad file never stops the job.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import numpy as np

from pipeline.align import AlignConfig, Aligner
from pipeline.asr import AsrConfig, DecodeOptions, Transcriber
from pipeline.audio import AudioLimits, load_audio
from pipeline.diarize import DiarizeConfig, Diarizer, SpeakerCount
from pipeline.errors import PipelineError
from pipeline.runner import assemble
from pipeline.schema import Audio, Segment, Transcript, Word
from pipeline.vad import SpeechDetector, VadOptions, cut


@dataclass(frozen=True)
class JobSettings:
    """Everything that decides a file's result (digested into its key) plus how to run."""

    asr_model: str = "bundled"
    language: str | None = None
    task: str = "transcribe"
    initial_prompt: str | None = None
    align_model: str | None = None
    diarize: bool = False
    diarize_model: str | None = None
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    vad_step_seconds: float = 2.5
    per_segment: bool = False
    # how to run (not part of the key)
    device: str = "auto"
    compute_type: str | None = None
    batch_size: int = 16
    max_seconds: float = 4 * 3600.0
    max_bytes: int = 2 * 1024 ** 3

    RESULT_FIELDS = ("asr_model", "language", "task", "initial_prompt", "align_model", "diarize", "diarize_model",
                     "num_speakers", "min_speakers", "max_speakers", "vad_step_seconds", "per_segment")

    def options_json(self) -> str:
        return json.dumps({k: getattr(self, k) for k in self.RESULT_FIELDS}, sort_keys=True)

    def digest(self) -> str:
        return hashlib.sha256(self.options_json().encode()).hexdigest()[:16]

    @property
    def speakers(self) -> SpeakerCount:
        return SpeakerCount(self.num_speakers, self.min_speakers, self.max_speakers)

    @property
    def decode(self) -> DecodeOptions:
        return DecodeOptions(language=self.language, task=self.task, initial_prompt=self.initial_prompt)


def file_key(content_sha256: str, settings: JobSettings) -> str:
    return f"{content_sha256}-{settings.digest()}"


def hash_row(row: dict, settings: JobSettings) -> dict:
    """read_binary_files row -> + content_sha256 and key."""
    digest = hashlib.sha256(row["bytes"]).hexdigest()
    return {**row, "content_sha256": digest, "key": file_key(digest, settings)}


class Preprocess:
    """Decode + VAD: audio bytes -> samples, speech regions and ASR chunk spans."""

    def __init__(self, settings: JobSettings):
        self.settings = settings
        self.limits = AudioLimits(max_bytes=settings.max_bytes, max_seconds=settings.max_seconds)
        self.vad = SpeechDetector(VadOptions(step_seconds=settings.vad_step_seconds))

    def __call__(self, batch: dict) -> dict:
        out = {k: [] for k in ("path", "content_sha256", "key", "samples", "duration_s", "speech_json",
                               "chunks_json", "error_code", "error")}
        for i in range(len(batch["path"])):
            for k in ("path", "content_sha256", "key"):
                out[k].append(batch[k][i])
            try:
                audio = load_audio(bytes(batch["bytes"][i]), self.limits)
                speech = self.vad.analyze(audio)
            except PipelineError as exc:
                _append_error(out, exc)
                continue
            out["samples"].append(audio.samples)
            out["duration_s"].append(float(audio.duration))
            out["speech_json"].append(json.dumps(speech.speech))
            out["chunks_json"].append(json.dumps(speech.chunks))
            out["error_code"].append(None)
            out["error"].append(None)
        return _columns(out)


class Transcribe:
    """ASR over all chunks of a batch of files at once (chunks batched across files), then
    alignment when an alignment model is set. Holds the models: the stage GPUs go to."""

    def __init__(self, settings: JobSettings):
        self.settings = settings
        self.transcriber = Transcriber(AsrConfig(model=settings.asr_model, device=settings.device,
                                                 compute_type=settings.compute_type, batch_size=settings.batch_size))
        self.aligner = Aligner(AlignConfig(model=settings.align_model, device=_torch_device(self.transcriber.device)))

    def __call__(self, batch: dict) -> dict:
        n = len(batch["path"])
        out = {k: list(batch[k]) for k in batch}
        out["language"], out["segments_json"] = [None] * n, [None] * n
        out["asr_model"] = [self.transcriber.model_id] * n
        out["align_model"] = [None] * n
        jobs, chunks, options = {}, [], []
        for i in range(n):
            if _failed(batch, i):
                continue
            audio = Audio(np.asarray(batch["samples"][i], dtype=np.float32))
            file_chunks = cut(audio, str(i), [tuple(c) for c in json.loads(batch["chunks_json"][i])])
            try:
                resolved = self.transcriber.resolve_options(self.settings.decode, file_chunks)
            except PipelineError as exc:
                out["error_code"][i], out["error"][i] = exc.code, str(exc)
                continue
            jobs[str(i)] = (i, audio, resolved.language)
            chunks += file_chunks
            options += [resolved] * len(file_chunks)
        results: dict[str, list] = {k: [] for k in jobs}
        for result in self.transcriber.transcribe_chunks(chunks, options) if chunks else []:
            results[result.audio_id].append(result)
        for audio_id, (i, audio, language) in jobs.items():
            try:
                segments = self.aligner.align(audio, results[audio_id], language)
            except PipelineError as exc:
                out["error_code"][i], out["error"][i] = exc.code, str(exc)
                continue
            out["language"][i] = language
            out["align_model"][i] = self.aligner.model_id(language)
            out["segments_json"][i] = json.dumps([asdict(s) for s in segments])
        if not self.settings.diarize:
            out.pop("samples")
        return _columns(out)


class Diarize:
    """Speaker turns from the audio alone, then speakers merged onto words and segments."""

    def __init__(self, settings: JobSettings):
        self.settings = settings
        self.diarizer = Diarizer(DiarizeConfig(model=settings.diarize_model, device=_torch_device(settings.device)))

    def __call__(self, batch: dict) -> dict:
        out = {k: list(batch[k]) for k in batch if k != "samples"}
        out["diarize_model"] = [self.diarizer.model_id] * len(out["path"])
        for i in range(len(out["path"])):
            if _failed(batch, i):
                continue
            audio = Audio(np.asarray(batch["samples"][i], dtype=np.float32))
            speech = [tuple(r) for r in json.loads(batch["speech_json"][i])]
            try:
                turns = self.diarizer.diarize(audio, speech, self.settings.speakers)
            except PipelineError as exc:
                out["error_code"][i], out["error"][i] = exc.code, str(exc)
                continue
            transcript = assemble(audio.duration, _segments(out["segments_json"][i]), out["language"][i], turns, {})
            out["segments_json"][i] = json.dumps([asdict(s) for s in transcript.segments])
        return _columns(out)


@dataclass
class ParquetSink:
    """Writes each batch as one Parquet file under OUTPUT, atomically (written under a
    temporary name, then renamed), and returns one small summary row per file."""

    output: str
    settings: JobSettings
    run_id: str

    def __call__(self, batch: dict) -> dict:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from cluster.inputs import filesystem_of
        from cluster.schema import FILE_SCHEMA, SEGMENT_SCHEMA, SCHEMA_VERSION

        now = datetime.now(timezone.utc)
        files = [_file_row(batch, i, self.settings, self.run_id, now, SCHEMA_VERSION) for i in range(len(batch["path"]))]
        if self.settings.per_segment:
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
        return {"path": [f["path"] for f in files], "duration_s": [f["duration_s"] or 0.0 for f in files],
                "error_code": [f["error_code"] or "" for f in files], "part": [name] * len(files)}


def _file_row(batch: dict, i: int, settings: JobSettings, run_id: str, now, version: int) -> dict:
    segments = _segments(_get(batch, "segments_json", i))
    duration = _number(batch["duration_s"][i])
    transcript = Transcript(segments=segments, language=_get(batch, "language", i) or "", duration=duration or 0.0)
    speakers = sorted({s.speaker for s in segments if s.speaker})
    error = _failed(batch, i)
    return {
        "path": str(batch["path"][i]), "content_sha256": batch["content_sha256"][i], "key": batch["key"][i],
        "duration_s": duration,
        "language": None if error else transcript.language, "text": None if error else transcript.text,
        "num_segments": None if error else len(segments), "num_words": None if error else len(transcript.words),
        "speakers": speakers if settings.diarize and not error else None,
        "segments_json": None if error else json.dumps(transcript.to_dict()["segments"], ensure_ascii=False),
        "asr_model": _get(batch, "asr_model", i), "align_model": _get(batch, "align_model", i),
        "diarize_model": _get(batch, "diarize_model", i), "options_json": settings.options_json(),
        "error_code": _get(batch, "error_code", i), "error": _get(batch, "error", i),
        "run_id": run_id, "processed_at": now, "schema_version": version,
    }


def _segment_rows(f: dict) -> list[dict]:
    common = {k: f[k] for k in ("path", "content_sha256", "key", "language", "duration_s", "asr_model",
                                "error_code", "error", "run_id", "processed_at", "schema_version")}
    if f["error_code"] is not None or not f["segments_json"]:
        return [{**common, "segment_index": None, "start_s": None, "end_s": None, "text": None, "speaker": None,
                 "words_json": None}]
    return [{**common, "segment_index": k, "start_s": s["start"], "end_s": s["end"], "text": s["text"],
             "speaker": s.get("speaker"), "words_json": json.dumps(s.get("words", []), ensure_ascii=False)}
            for k, s in enumerate(json.loads(f["segments_json"]))]


def _segments(raw: str | None) -> list[Segment]:
    if not raw:
        return []
    return [Segment(start=s["start"], end=s["end"], text=s["text"], words=[Word(**w) for w in s["words"]],
                    avg_logprob=s.get("avg_logprob"), speaker=s.get("speaker"))
            for s in json.loads(raw)]


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


def _append_error(out: dict, exc: PipelineError) -> None:
    out["samples"].append(np.zeros(0, dtype=np.float32))
    out["duration_s"].append(None)
    out["speech_json"].append("[]")
    out["chunks_json"].append("[]")
    out["error_code"].append(exc.code)
    out["error"].append(str(exc))


def _columns(out: dict) -> dict:
    """Lists -> numpy columns; ragged sample arrays as an object column."""
    columns = {}
    for k, values in out.items():
        if k == "samples":
            column = np.empty(len(values), dtype=object)
            column[:] = values
            columns[k] = column
        else:
            columns[k] = np.array(values, dtype=object)
    return columns


def _torch_device(device: str) -> str:
    from pipeline.models import resolve_device

    return resolve_device(device)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + os.urandom(3).hex()
