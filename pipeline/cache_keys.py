"""A result's identity, from the plan: the result cache's keys per stage (`stage_keys`) and the
batch job's row key (`batch_options`); both digest the same per-stage options.

A key is the sha256 of the audio bytes, the options that change that stage's result and its
models' identity. Never the output format (a transcript cached for `srt` serves `vtt`), and
never a sample (temperature > 0: a repeat asks for another one).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from pipeline.diarize.config import RECIPE_REVISION
from pipeline.diarize.known import references_digest
from pipeline.plan import Plan

KEY_VERSION = 2  # bump when a cached value's shape or meaning changes (2: word times kept on speech, issue 12)


@dataclass(frozen=True)
class StageKeys:
    asr: str
    align: str | None
    diarize: str | None
    result: str

    def lookups(self) -> list[str]:
        """Every key a lookup asks for, in the order a hit is preferred."""
        return [k for k in (self.asr, self.align, self.diarize) if k]


def audio_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stage_keys(plan: Plan, audio_sha256: str) -> StageKeys | None:
    """The plan's keys for this audio (None: not cached). The ASR part names the request's model
    choice (a model, or the routing rule) and every model it may run, with their weights'
    fingerprints and compute types (`Plan.asr_identity`)."""
    if plan.decode.temperature > 0:
        return None
    # asr: the chunks (with the language vote and Whisper's word times) and the VAD's speech.
    # `decode` holds word_timestamps: timed segments are cut at sentence ends, which changes how
    # `text` joins them in languages written without spaces, so timed never serves untimed.
    model = {"model": plan.asr_choice, "identity": plan.asr_identity, "compute_type": plan.config.asr.compute_type}
    detection = (
        plan.detection_chunks,
        plan.detection_first_chunks,
        *plan.detection_confidence,
        plan.detection_window,
        plan.config.asr.language_trim_confidence,
        *([plan.language_candidates] if plan.language_candidates else []),
    )
    asr = _digest("asr", audio_sha256, model, asdict(plan.decode), *detection, _vad(plan))
    align = _digest("align", asr, _align(plan)) if plan.align_requested else None
    # diarize: the turns depend on the audio, the VAD and the diarizer only.
    diarize = _digest("diarize", audio_sha256, _vad(plan), *_diarize(plan)) if plan.diarize else None
    # result: every stage the request runs (identical requests in flight compute once).
    return StageKeys(asr, align, diarize, _digest("result", asr, align, diarize))


def _digest(stage: str, *parts) -> str:
    text = json.dumps([KEY_VERSION, stage, *parts], sort_keys=True, default=str)
    return f"{stage}-{hashlib.sha256(text.encode()).hexdigest()[:40]}"


def result_options(plan: Plan) -> dict:
    """Everything that can change a result's content (never its format), as planned: equal
    results share a row key, and a rerun with other options is a different result."""
    return {
        "asr_model": plan.asr_model or plan.asr_choice,  # the model when known at plan time, else the rule
        "asr_models": plan.asr_identity,
        "compute_type": plan.config.asr.compute_type,
        "language_detection_chunks": plan.detection_chunks,
        "language_detection_first_chunks": plan.detection_first_chunks,
        "language_confidence": list(plan.detection_confidence),
        "language_detection_window": plan.detection_window,
        "language_trim_confidence": plan.config.asr.language_trim_confidence,
        **({"language_candidates": list(plan.language_candidates)} if plan.language_candidates else {}),
        "decode": asdict(plan.decode),
        "vad": _vad(plan),
        "align": _align(plan) if plan.align_requested else None,
        "diarize": _diarize(plan)[0] if plan.diarize else None,
        "speakers": _diarize(plan)[1] if plan.diarize else None,
    }


def batch_options(plan: Plan, per_segment: bool, schema_version: int) -> str:
    """The batch job's `options_json`: the result's options, the row shape and the versions of
    results and rows (a rerun into a folder an older build wrote redoes its files)."""
    shape = {"per_segment": per_segment, "key_version": KEY_VERSION, "schema_version": schema_version}
    return json.dumps({**result_options(plan), **shape}, sort_keys=True)


def row_key(content_sha256: str, digest: str) -> str:
    """A batch row's key: the file's sha256 and the digest of the job's `batch_options`."""
    return f"{content_sha256}-{digest}"


def options_digest(options: dict) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]


def _vad(plan: Plan) -> dict:
    return _options(plan.vad)  # the request's (server_vad changes the regions)


def _align(plan: Plan) -> dict:
    return _options(plan.config.align)


def _diarize(plan: Plan) -> tuple[dict, dict]:
    """The diarizer's settings, and what the request asks of it: the count and the known speakers."""
    asked = asdict(plan.speakers)
    if plan.request.known_speakers:  # the names they give are part of the turns
        asked["known_speakers"] = references_digest(plan.request.known_speakers)
    return {**_options(plan.config.diarize), "recipe": RECIPE_REVISION}, asked


def _options(stage_config) -> dict:
    # A torch stage's precision and compile (`runtime`) change its outputs only within the
    # tolerances its tests hold them to, and how many windows share a forward (`batch_size`)
    # not at all: they stay out of the key.
    # A limit on requests (`max_known_speakers`) changes no result either.
    return {k: v for k, v in asdict(stage_config).items() if k not in ("runtime", "batch_size", "max_known_speakers")}
