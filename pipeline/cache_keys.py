"""Result-cache keys per stage, from the plan: what a repeat of a request may reuse.

A key is the sha256 of the audio bytes, the options that change that stage's result and the
identity of its models (name, and the ASR weights' revision or checksum). The output format
never enters a key: a transcript cached for `srt` serves `vtt`, `verbose_json` or `text`.

- `asr`: the ASR chunks (with the language vote, and Whisper's word times when the plan times
  words) and the VAD's speech regions. Whether words are timed is part of the key: with word
  times, segments are cut at sentence ends, which changes how `text` joins them in languages
  written without spaces, so a timed entry never serves an untimed request.
- `align`: wav2vec2 word times for those chunks (when the plan aligns).
- `diarize`: speaker turns, which depend on the audio, the VAD and the diarizer only.
- `result`: all the stages a request runs: identical requests in flight compute once.

Sampling (temperature > 0) is not cached: a repeat asks for another sample.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from pipeline.plan import Plan, _without_runtime

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


def stage_keys(plan: Plan, audio_sha256: str, asr_identity: str = "") -> StageKeys | None:
    """The plan's keys for this audio, or None when its result must not be cached.
    `asr_identity`: what the executor knows of the loaded ASR model beyond its name (its
    weights' fingerprint and the compute type it really runs)."""
    if plan.decode.temperature > 0:
        return None
    asr = _asr_key(plan, audio_sha256, asr_identity)
    align = None
    if plan.align_requested:
        align = _digest("align", asr, _without_runtime(asdict(plan.config.align)))
    diarize = None
    if plan.diarize:
        diarize = _digest(
            "diarize",
            audio_sha256,
            _without_runtime(asdict(plan.config.vad)),
            _without_runtime(asdict(plan.config.diarize)),
            asdict(plan.speakers),
        )
    return StageKeys(asr, align, diarize, _digest("result", asr, align, diarize))


def _asr_key(plan: Plan, audio_sha256: str, identity: str) -> str:
    config = plan.config
    decode = asdict(plan.decode)  # word_timestamps included: the plan's word timing
    return _digest(
        "asr",
        audio_sha256,
        {"model": plan.asr_model, "identity": identity, "compute_type": config.asr.compute_type},
        decode,
        plan.detection_chunks,
        _without_runtime(asdict(config.vad)),
    )


def _digest(stage: str, *parts) -> str:
    text = json.dumps([KEY_VERSION, stage, *parts], sort_keys=True, default=str)
    return f"{stage}-{hashlib.sha256(text.encode()).hexdigest()[:40]}"
