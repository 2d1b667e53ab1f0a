"""Transcript -> bytes in WhisperX's JSON and OpenAI's response formats, plus srt, vtt and tsv."""

from __future__ import annotations

import json
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
}
EXTENSIONS = {
    "whisperx": "json",
    "json": "json",
    "verbose_json": "json",
    "text": "txt",
    "srt": "srt",
    "vtt": "vtt",
    "tsv": "tsv",
}


def render(transcript: Transcript, fmt: str, *, task: str = "transcribe", word_granularity: bool = True) -> bytes:
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise InvalidOption(f"response_format must be one of {', '.join(_RENDERERS)}, not {fmt!r}")
    if fmt == "verbose_json":  # the one format that depends on the request's options
        return _verbose_json(transcript, task, word_granularity).encode()
    return renderer(transcript).encode()


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


_RENDERERS: dict[str, Callable[[Transcript], str]] = {
    "whisperx": _whisperx,
    "json": _json,
    "verbose_json": _verbose_json_default,
    "text": _text,
    "srt": _srt,
    "vtt": _vtt,
    "tsv": _tsv,
}


def language_name(code: str) -> str:
    """OpenAI's verbose_json names the language ("english"), not its code."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return LANGUAGES.get(code, code)
