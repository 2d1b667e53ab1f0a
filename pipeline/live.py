"""Live sessions (OpenAI's Realtime transcription): what each committed utterance asks for.

A session is one speaker's stream. Its settings (model, language, prompt) come from the client;
what it learns stays with it: the language identified on its first utterance is kept for the
rest (a stream does not change language mid-sentence, and identification costs an encoder pass
per utterance), and the text of the utterances before is the next one's prompt, as Whisper
conditions a long file's chunks on the text before them. Every executor plans the resulting
`Request` like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.plan import Request

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

    def request(self) -> Request:
        """The next committed utterance's request: plain text, no word timing, uncached by
        the caller (each utterance is new audio)."""
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
        )

    def completed(self, transcript: str, language: str) -> None:
        """An utterance's result: its text becomes context, its language the session's."""
        if transcript.strip():
            self.transcripts.append(transcript.strip())
            if self.settings.language is None and self.language is None:
                self.language = language
