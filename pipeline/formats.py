"""The output formats, one registry (`FORMATS`): name -> content type, extension, renderer and what it
needs (word times, speaker turns). A new format is one `Format` entry and its renderer."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pipeline.errors import InvalidOption
from pipeline.schema import Segment, Transcript

DEFAULT_FILE_ID = "audio"  # rttm's file id when the input has no usable name


@dataclass(frozen=True)
class RenderContext:
    """What a renderer may use besides the transcript."""

    task: str = "transcribe"
    word_granularity: bool = True  # verbose_json: include `words`
    source: str | None = None  # the input's name (path or upload filename): rttm's file id
    service: dict | None = None  # the service's account of the request (whisperx JSON's `service`)


WordTimes = Literal["always", "asked", "never"]


@dataclass(frozen=True)
class Format:
    name: str
    content_type: str
    extension: str
    renderer: Callable[[Transcript, RenderContext], str]
    # Times finer than Whisper's segments: the plan runs word timing "always", "never", or when
    # the request asks for words ("asked": OpenAI's timestamp_granularities[]=word; native and
    # CLI requests ask by default). Otherwise segments keep Whisper's own timestamps.
    word_times: WordTimes
    needs_speakers: bool = False  # made of speaker turns: the plan runs diarization
    openai: bool = False  # one of OpenAI's response formats (/v1/audio/transcriptions)


def render(transcript: Transcript, fmt: str, **context) -> bytes:
    """`context`: RenderContext's fields."""
    return lookup(fmt).renderer(transcript, RenderContext(**context)).encode()


def lookup(name: str, openai: bool = False) -> Format:
    """The format called `name` (among OpenAI's, when `openai`), or InvalidOption naming the choices."""
    allowed = [f for f in FORMATS.values() if f.openai or not openai]
    found = next((f for f in allowed if f.name == name), None)
    if found is None:
        names = ", ".join(f.name for f in allowed)
        raise InvalidOption(f"response_format must be one of {names}, not {name!r}")
    return found


def file_id(source: str | None) -> str:
    """rttm's file id: the name's stem (folders and last extension dropped), runs of characters other
    than letters, digits, `.`, `_`, `-` made one `_` (RTTM is space-separated); "audio" if empty."""
    name = re.split(r"[/\\]", source or "")[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    cleaned = re.sub(r"[^\w.-]+", "_", stem).strip("._")
    return cleaned or DEFAULT_FILE_ID


def _whisperx(t: Transcript, context: RenderContext) -> str:
    body = t.to_dict()
    if context.service is not None:
        body["service"] = context.service
    return json.dumps(body, ensure_ascii=False)


def usage(t: Transcript) -> dict:
    """OpenAI's usage of a duration-billed model: the input's seconds, rounded up."""
    return {"type": "duration", "seconds": math.ceil(t.duration)}


def _json(t: Transcript, context: RenderContext) -> str:
    return json.dumps({"text": t.text, "usage": usage(t)}, ensure_ascii=False)


def _text(t: Transcript, context: RenderContext) -> str:
    return t.text + "\n"


def _verbose_json(t: Transcript, context: RenderContext) -> str:
    body = {
        "task": context.task,
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
    if context.word_granularity:
        body["words"] = [
            {"word": w.word, "start": w.start, "end": w.end, **({"speaker": w.speaker} if w.speaker else {})}
            for w in t.words
        ]
    body["usage"] = usage(t)
    return json.dumps(body, ensure_ascii=False)


_DIARIZER_LABEL = re.compile(r"SPEAKER_\d+")  # a speaker no known speaker named


def speaker_letters(speakers: list[str]) -> dict[str, str]:
    """OpenAI's labels: A, B, ... (AA, AB, ... past Z) for the diarizer's, in order of first
    appearance; a known speaker's name stays."""
    letters, out = 0, {}
    for speaker in dict.fromkeys(speakers):
        if _DIARIZER_LABEL.fullmatch(speaker):
            first, second = divmod(letters, 26)
            out[speaker] = (chr(64 + first) if first else "") + chr(65 + second)
            letters += 1
        else:
            out[speaker] = speaker
    return out


def speaker_runs(t: Transcript) -> list[Segment]:
    """The segments cut where the speaker changes between words: each run one speaker's."""
    from pipeline.align import word_separator

    separator = word_separator(t.language)
    runs: list[Segment] = []
    for segment in t.segments:
        groups: list[list] = []
        for word in segment.words:
            if groups and (word.speaker is None or word.speaker == groups[-1][0].speaker):
                groups[-1].append(word)
            else:
                groups.append([word])
        if len(groups) <= 1:
            runs.append(segment)
            continue
        for words in groups:
            text = separator.join(w.word.strip() for w in words)
            runs.append(Segment(words[0].start, words[-1].end, text, words, segment.avg_logprob, words[0].speaker))
    return runs


def diarized_segments(t: Transcript) -> list[dict]:
    """OpenAI's diarized segments (`transcript.text.segment`), speakers lettered unless named."""
    runs = [r for r in speaker_runs(t) if r.text.strip()]
    previous, speakers = "SPEAKER_00", []
    for run in runs:  # a run with no turn under it: the speaker before it
        previous = run.speaker or previous
        speakers.append(previous)
    label = speaker_letters(speakers)
    return [
        {
            "type": "transcript.text.segment",
            "id": f"seg_{i}",
            "start": run.start,
            "end": run.end,
            "text": run.text.strip(),
            "speaker": label[speaker],
        }
        for i, (run, speaker) in enumerate(zip(runs, speakers))
    ]


def _diarized_json(t: Transcript, context: RenderContext) -> str:
    body = {
        "task": "transcribe",
        "duration": round(t.duration, 3),
        "text": t.text,
        "segments": diarized_segments(t),
        "usage": usage(t),
    }
    return json.dumps(body, ensure_ascii=False)


def _cue_text(segment: Segment) -> str:
    text = segment.text.strip()
    return f"[{segment.speaker}]: {text}" if segment.speaker else text


def _timestamp(seconds: float, decimal: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def _srt(t: Transcript, context: RenderContext) -> str:
    cues = [
        f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{_cue_text(s)}\n"
        for i, s in enumerate((s for s in t.segments if s.text.strip()), start=1)
    ]
    return "\n".join(cues)


def _vtt(t: Transcript, context: RenderContext) -> str:
    cues = [
        f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{_cue_text(s)}\n"
        for s in t.segments
        if s.text.strip()
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def _tsv(t: Transcript, context: RenderContext) -> str:
    rows = ["start\tend\tspeaker\ttext"]
    for s in t.segments:
        if s.text.strip():
            text = s.text.strip().replace("\t", " ").replace("\n", " ")
            rows.append(f"{int(round(s.start * 1000))}\t{int(round(s.end * 1000))}\t{s.speaker or ''}\t{text}")
    return "\n".join(rows) + "\n"


def _rttm(t: Transcript, context: RenderContext) -> str:
    """One SPEAKER line per turn, in the transcript's (start, end) order; overlaps kept."""
    name = file_id(context.source)
    if t.speaker_turns is None:
        raise InvalidOption("rttm lists speaker turns: it needs diarization")
    lines = []
    for turn in t.speaker_turns:
        speaker = "_".join(turn.speaker.split()) or "unknown"
        duration = max(0.0, turn.end - turn.start)
        lines.append(f"SPEAKER {name} 1 {turn.start:.3f} {duration:.3f} <NA> <NA> {speaker} <NA> <NA>\n")
    return "".join(lines)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("whisperx", "application/json", "json", _whisperx, word_times="always"),
        Format("json", "application/json", "json", _json, word_times="never", openai=True),
        Format("verbose_json", "application/json", "json", _verbose_json, word_times="asked", openai=True),
        Format("text", "text/plain; charset=utf-8", "txt", _text, word_times="never", openai=True),
        Format("srt", "application/x-subrip; charset=utf-8", "srt", _srt, word_times="asked", openai=True),
        Format("vtt", "text/vtt; charset=utf-8", "vtt", _vtt, word_times="asked", openai=True),
        Format("tsv", "text/tab-separated-values; charset=utf-8", "tsv", _tsv, word_times="asked"),
        Format("diarized_json", "application/json", "json", _diarized_json, "never", needs_speakers=True, openai=True),
        Format("rttm", "text/plain; charset=utf-8", "rttm", _rttm, word_times="never", needs_speakers=True),
    )
}


def language_name(code: str) -> str:
    """OpenAI's verbose_json names the language ("english"), not its code."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return LANGUAGES.get(code, code)
