"""Transcript -> bytes in WhisperX's JSON and OpenAI's response formats, plus srt, vtt, tsv and
rttm (the speaker turns, in NIST's Rich Transcription Time Marked format)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from pipeline.errors import InvalidOption
from pipeline.schema import Segment, Transcript

CONTENT_TYPES = {
    "whisperx": "application/json",
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "rttm": "text/plain; charset=utf-8",
}
EXTENSIONS = {
    "whisperx": "json",
    "json": "json",
    "verbose_json": "json",
    "text": "txt",
    "srt": "srt",
    "vtt": "vtt",
    "tsv": "tsv",
    "rttm": "rttm",
}
# Formats made of speaker turns: they need diarization (pipeline.plan decides it).
SPEAKER_FORMATS = ("rttm",)
DEFAULT_FILE_ID = "audio"  # rttm's file id when the input has no usable name


def render(
    transcript: Transcript,
    fmt: str,
    *,
    task: str = "transcribe",
    word_granularity: bool = True,
    source: str | None = None,
) -> bytes:
    """`source`: the input's name (a path or an upload's filename), rttm's file id."""
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise InvalidOption(f"response_format must be one of {', '.join(_RENDERERS)}, not {fmt!r}")
    if fmt == "verbose_json":  # depends on the request's options
        return _verbose_json(transcript, task, word_granularity).encode()
    if fmt == "rttm":  # names its input
        return _rttm(transcript, file_id(source)).encode()
    return renderer(transcript).encode()


def file_id(source: str | None) -> str:
    """rttm's file id for an input: its name's stem (any folders, from either kind of slash,
    and the last extension dropped), with every run of characters other than letters, digits,
    `.`, `_` and `-` made one `_` (RTTM is space-separated); "audio" when nothing is left."""
    name = re.split(r"[/\\]", source or "")[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    cleaned = re.sub(r"[^\w.-]+", "_", stem).strip("._")
    return cleaned or DEFAULT_FILE_ID


def _whisperx(t: Transcript) -> str:
    return json.dumps(t.to_dict(), ensure_ascii=False)


def _json(t: Transcript) -> str:
    return json.dumps({"text": t.text}, ensure_ascii=False)


def _text(t: Transcript) -> str:
    return t.text + "\n"


def _verbose_json(t: Transcript, task: str, word_granularity: bool) -> str:
    body = {
        "task": task,
        "language": language_name(t.language),
        "duration": round(t.duration, 3),
        "text": t.text,
        "segments": [
            {
                "id": i,
                "seek": 0,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": s.avg_logprob if s.avg_logprob is not None else 0.0,
                "compression_ratio": 0.0,
                "no_speech_prob": 0.0,
                **({"speaker": s.speaker} if s.speaker else {}),
            }
            for i, s in enumerate(t.segments)
        ],
    }
    if word_granularity:
        body["words"] = [
            {"word": w.word, "start": w.start, "end": w.end, **({"speaker": w.speaker} if w.speaker else {})}
            for w in t.words
        ]
    return json.dumps(body, ensure_ascii=False)


def _verbose_json_default(t: Transcript) -> str:
    return _verbose_json(t, "transcribe", True)


def _cue_text(segment: Segment) -> str:
    text = segment.text.strip()
    return f"[{segment.speaker}]: {text}" if segment.speaker else text


def _timestamp(seconds: float, decimal: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def _srt(t: Transcript) -> str:
    cues = [
        f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{_cue_text(s)}\n"
        for i, s in enumerate((s for s in t.segments if s.text.strip()), start=1)
    ]
    return "\n".join(cues)


def _vtt(t: Transcript) -> str:
    cues = [
        f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{_cue_text(s)}\n"
        for s in t.segments
        if s.text.strip()
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def _tsv(t: Transcript) -> str:
    rows = ["start\tend\tspeaker\ttext"]
    for s in t.segments:
        if s.text.strip():
            text = s.text.strip().replace("\t", " ").replace("\n", " ")
            rows.append(f"{int(round(s.start * 1000))}\t{int(round(s.end * 1000))}\t{s.speaker or ''}\t{text}")
    return "\n".join(rows) + "\n"


def _rttm(t: Transcript, file_id: str) -> str:
    """One SPEAKER line per turn, in the transcript's (start, end) order; overlaps kept."""
    if t.speaker_turns is None:
        raise InvalidOption("rttm lists speaker turns: it needs diarization")
    lines = []
    for turn in t.speaker_turns:
        speaker = "_".join(turn.speaker.split()) or "unknown"
        duration = max(0.0, turn.end - turn.start)
        lines.append(f"SPEAKER {file_id} 1 {turn.start:.3f} {duration:.3f} <NA> <NA> {speaker} <NA> <NA>\n")
    return "".join(lines)


def _rttm_default(t: Transcript) -> str:
    return _rttm(t, DEFAULT_FILE_ID)


_RENDERERS: dict[str, Callable[[Transcript], str]] = {
    "whisperx": _whisperx,
    "json": _json,
    "verbose_json": _verbose_json_default,
    "text": _text,
    "srt": _srt,
    "vtt": _vtt,
    "tsv": _tsv,
    "rttm": _rttm_default,
}


def language_name(code: str) -> str:
    """OpenAI's verbose_json names the language ("english"), not its code."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return LANGUAGES.get(code, code)
