"""Live sessions (OpenAI's Realtime transcription): what each committed utterance asks for.

A session is one speaker's stream. Its settings (model, language, prompt) come from the client;
what it learns stays with it: the language identified on its first utterance is kept for the
rest (a stream does not change language mid-sentence, and identification costs an encoder pass
per utterance), and the text of the utterances before is the next one's prompt, as Whisper
conditions a long file's chunks on the text before them. Every executor plans the resulting
`Request` like any other.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass, field

import numpy as np

from pipeline.plan import Request
from pipeline.schema import SAMPLE_RATE
from pipeline.turns import STREAM_RATE

# Whisper's prompt holds 224 tokens; the tail of the text before, at most this many characters,
# stays well inside it after the client's own prompt.
CONTEXT_CHARS = 400


@dataclass(frozen=True)
class LiveSettings:
    """What the client set (session.update's transcription block)."""

    model: str | None = None  # None, whisper-1, auto: the routing rule
    language: str | None = None  # None: identified on the first utterance, then kept
    prompt: str = ""


@dataclass
class LiveSession:
    settings: LiveSettings = field(default_factory=LiveSettings)
    language: str | None = None  # identified on the first utterance (settings.language unset)
    transcripts: list[str] = field(default_factory=list)  # completed utterances, in commit order

    def request(self, whole_speech: bool = False) -> Request:
        """The next committed utterance's request: plain text, no word timing, uncached by
        the caller (each utterance is new audio). `whole_speech`: the server VAD found it (a
        turn is speech from end to end), so no VAD pass runs over it again."""
        context = " ".join(self.transcripts)[-CONTEXT_CHARS:]
        if len(context) == CONTEXT_CHARS and " " in context:
            context = context.split(" ", 1)[1]  # whole words only
        prompt = " ".join(p for p in (self.settings.prompt.strip(), context.strip()) if p)
        return Request(
            language=self.settings.language or self.language,
            initial_prompt=prompt or None,
            model=self.settings.model,
            response_format="text",
            word_timestamps=False,
            align=False,
            openai=True,
            live=True,
            whole_speech=whole_speech,
        )

    def completed(self, transcript: str, language: str) -> None:
        """An utterance's result: its text becomes context, its language the session's."""
        if transcript.strip():
            self.transcripts.append(transcript.strip())
            if self.settings.language is None and self.language is None:
                self.language = language


def wav_bytes(pcm16: bytes) -> bytes:
    """A committed utterance (OpenAI's pcm16 at 24 kHz) as a 16 kHz mono 16-bit WAV: the model's
    rate, which pipeline.audio reads in-process, so an utterance starts no ffmpeg (measured
    0.12-0.33 s of a live turn's delay under load)."""
    from scipy.signal import resample_poly

    samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float32)
    resampled = resample_poly(samples, SAMPLE_RATE, STREAM_RATE)
    out = io.BytesIO()
    with wave.open(out, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes(np.clip(np.round(resampled), -32768, 32767).astype("<i2").tobytes())
    return out.getvalue()
