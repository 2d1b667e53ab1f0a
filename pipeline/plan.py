"""The request plan: every decision about how a request is processed, made once, here.

A `Request` (what a user asks, in any entry point) becomes a `Plan` (which stages run, with
which models and options); the runner, the Serve executor and the Ray Data stages execute it
with their own means and decide nothing. The rules: docs/ARCHITECTURE.md, "The rules".
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

from pipeline.align import CROSS_ATTENTION_ID, word_separator
from pipeline.asr import DecodeOptions, DecodingChoices, check_decode_options
from pipeline.cache_entries import Reused
from pipeline.chunking import ServerVad, vad_options
from pipeline.config import PipelineConfig
from pipeline.diarize import SpeakerCount
from pipeline.diarize.known import KnownSpeaker, SpeakerReference, check_names, decode_references
from pipeline.errors import InvalidOption, MultilingualModelNeeded, StreamNotAvailable, UnsupportedLanguage
from pipeline.formats import FORMATS, Format, lookup, render
from pipeline.merge import assign_speakers
from pipeline.models import AsrCard
from pipeline.routing import AUTO, AsrRoutes
from pipeline.schema import ChunkResult, Segment, Transcript, Turn, normalized_turns
from pipeline.vad import VAD_MODEL_ID, SpeechMap, VadOptions, whole_speech_map

T = TypeVar("T")


@dataclass(frozen=True)
class Request(DecodingChoices):
    """What a user can ask for, in any entry point: the decoding choices (language, task,
    initial_prompt, temperature, beam_size) and what to do around them."""

    align: bool = True  # use the configured alignment model, if any
    diarize: bool | None = None  # None: not said (a speaker count or rttm implies it); False: off
    speakers: SpeakerCount = field(default_factory=SpeakerCount)
    response_format: str = "whisperx"
    # Words asked for (OpenAI: timestamp_granularities[]=word): verbose_json lists them, and it,
    # srt, vtt and tsv cut segments at word times; without, they keep Whisper's segment times.
    word_timestamps: bool = True
    openai: bool = False  # asked through OpenAI's protocol: only its response formats
    model: str | None = None  # an ASR model's id or configured name; None, "auto", whisper-1: the rule
    # The text as each chunk is decoded, in audio order (OpenAI's stream=true): STREAMED_FORMATS.
    stream: bool = False
    # Names for the speakers whose voice matches a reference clip (pipeline/diarize/known.py).
    known_speakers: tuple[KnownSpeaker, ...] = ()
    # OpenAI's chunking_strategy: None (auto) runs the configured VAD; server_vad its own thresholds.
    chunking: ServerVad | None = None
    # OpenAI's languages[]: the audio is in one of these (one: it is the language; several: the
    # vote chooses among them only). keywords[]: words and phrases to expect, given to the decoder
    # after the prompt (as faster-whisper's hotwords are).
    languages: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    # A live session's utterance (pipeline/live.py): its chunks are decoded ahead of bulk work's.
    live: bool = False
    # The audio is one stretch of speech its caller found (a server-VAD turn): no VAD pass.
    whole_speech: bool = False


@dataclass(frozen=True)
class Plan:
    """The stages one request runs and how. Built by `Planner.plan`; `language` is None until
    detection has run (`with_language`)."""

    request: Request
    decode: DecodeOptions
    word_timing: bool
    align_requested: bool  # word timing runs, `align` is on and some align model is configured
    diarize: bool
    config: PipelineConfig = field(repr=False)
    routes: AsrRoutes = field(repr=False)
    pinned: str | None = None  # the ASR model the request named; None: the routing rule
    language_detected: bool = False  # set by `with_language`: the vote ran
    cached: Reused = field(default_factory=Reused, repr=False)  # stage outputs the cache holds
    vad: VadOptions = field(default_factory=VadOptions)  # the request's VAD (`chunking.vad_options`)
    language_candidates: tuple[str, ...] = ()  # the vote chooses among these only (none: any)

    @property
    def format(self) -> Format:
        return FORMATS[self.request.response_format]

    @property
    def speakers(self) -> SpeakerCount:
        return self.request.speakers

    @property
    def detection_chunks(self) -> int:
        """How many of the longest chunks the language vote runs over."""
        return self.config.asr.language_detection_chunks

    @property
    def language(self) -> str | None:
        return self.decode.language

    @property
    def detects_language(self) -> bool:
        return self.decode.language is None

    @property
    def asr_model(self) -> str:
        """The id of the model that decodes ("" until the language that routes it is known)."""
        return self.decode.model

    @property
    def detect_model(self) -> str:
        """The id of the model that identifies the language (when the plan detects)."""
        detector = self.routes.detector(self.pinned)
        return detector.model_id if detector is not None else ""

    @property
    def asr_choice(self) -> str:
        """What the request chose: a model id, or the rule (part of the result-cache keys)."""
        return self.pinned or AUTO

    @property
    def asr_identity(self) -> str:
        """The weights and compute types of every model this choice may run (cache keys)."""
        return self.routes.identity(self.pinned)

    @property
    def aligns(self) -> bool:
        """A wav2vec2 pass runs after ASR: requested, and a model is configured for the
        language (until the language is detected: whether one may be)."""
        if not self.align_requested:
            return False
        return self.language is None or self.config.align.model_name(self.language) is not None

    def stages(self) -> tuple[str, ...]:
        """The stages that run, in order (logs, docs, tests); "cache" last when the cache answered some."""
        out = ["decode"] if self.request.whole_speech else ["decode", "vad"]
        if self.detects_language or self.language_detected:
            out.append("language")
        out.append("asr")
        if self.word_timing:
            out.append("align" if self.aligns else "word_times")
        if self.diarize:
            out.append("diarize")
        out += ["merge", "render"]
        skipped = set()
        if self.cached.asr is not None:
            skipped |= {"vad", "language", "asr", "word_times"}
        if self.cached.aligned is not None:
            skipped.add("align")
        if self.cached.turns is not None:
            skipped.add("diarize")
        return tuple([s for s in out if s not in skipped] + (["cache"] if skipped else []))

    def speaker_references(self) -> tuple[SpeakerReference, ...]:
        """The known speakers' clips decoded (an error names a bad one's field); () when none."""
        return decode_references(self.request.known_speakers) if self.diarize else ()

    def with_cached(self, cached: Reused) -> Plan:
        """Those stages do not run again; a cached ASR brings its language (a detected one counts as detected)."""
        plan = replace(self, cached=cached)
        if cached.asr is not None and plan.detects_language:
            plan = plan.with_language(cached.asr.language)
        return plan

    def given_speech(self, duration: float) -> SpeechMap | None:
        """The speech map when the request brings it (`whole_speech`); None: the VAD finds it."""
        if not self.request.whole_speech:
            return None
        return whole_speech_map(duration, self.config.vad.chunk_seconds)

    def to_run(self) -> tuple[str, ...]:
        """The model stages still to run: "asr", "align", "diarize" (nothing: a full hit)."""
        out = []
        if self.cached.asr is None:
            out.append("asr")
            if self.aligns:
                out.append("align")
        elif self.aligns and self.cached.asr.chunks and self.cached.aligned is None:
            out.append("align")
        if self.diarize and self.cached.turns is None:
            out.append("diarize")
        return tuple(out)

    @property
    def cache_state(self) -> str:
        """X-Cache: hit (nothing ran), partial (some stages reused) or miss."""
        if not self.to_run():
            return "hit"
        cached = (self.cached.asr, self.cached.aligned, self.cached.turns)
        return "partial" if any(c is not None for c in cached) else "miss"

    @property
    def detection_first_chunks(self) -> int:
        """The language vote looks no further than this many chunks from the start."""
        return max(self.detection_chunks, self.config.asr.language_detection_first_chunks)

    @property
    def detection_confidence(self) -> tuple[float, float]:
        """When the first chunk decides alone: (its confidence, its least length in seconds)."""
        return (self.config.asr.language_confidence, self.config.asr.language_confident_seconds)

    @property
    def detection_window(self) -> str:
        """What the language's encoder pass sees: the chunks' own frames, or 30 s windows."""
        return "speech" if self.config.asr.language_detection_trim else "30s"

    def language_sample(self, chunks: Sequence[tuple[float, float]]) -> list[int]:
        """Indices of the chunks the language vote runs over: the longest of the first
        `detection_first_chunks`, in time order."""
        # The longest: the most speech per encoder pass.
        first = range(min(len(chunks), self.detection_first_chunks))
        ranked = sorted(first, key=lambda i: (-(chunks[i][1] - chunks[i][0]), i))
        return sorted(ranked[: self.detection_chunks])

    def with_language(self, language: str) -> Plan:
        """The detected language, and the model it routes to."""
        model = self.routes.for_language(language, self.decode.task, self.pinned).model_id
        return replace(self, decode=replace(self.decode, language=language, model=model), language_detected=True)

    def models(self) -> dict[str, str]:
        """The ids of the models this plan runs (reported in every result)."""
        # before the language routes it: the model that identifies it
        models = {"asr": self.asr_model or self.detect_model, "vad": VAD_MODEL_ID}
        if self.word_timing:
            aligned = self.aligns and self.language is not None
            models["align"] = self.config.align.model_id(self.language) if aligned else CROSS_ATTENTION_ID
        if self.diarize:
            models["diarize"] = self.config.diarize.model_id
        return models

    def chunk_segments(self, results: Sequence[ChunkResult]) -> list[Segment]:
        """ASR's own segments in time order (when no alignment pass runs)."""
        return [seg for r in sorted(results, key=lambda r: r.index) for seg in r.segments]

    # --- the steps an executor runs with its own means -------------------------------------

    def decides_alone(self, first: tuple[float, float]) -> bool:
        """Whether the first chunk's language, when the model is sure of it, needs no vote."""
        asr = self.config.asr
        return asr.language_confidence <= 1.0 and first[1] - first[0] >= asr.language_confident_seconds

    async def detect_language(self, chunks: Sequence[Any] | Callable[[int], Any], detect: Callable[..., Any]) -> Plan:
        """When the plan detects, the executor's `detect(sampled chunks, model id, candidates) ->
        (language, confidence)` decides, on the model `detect_model` names, among
        `language_candidates` (none: any): the first chunk alone when it `decides_alone` and the
        model is `language_confidence` sure, else the vote over `language_sample`. `chunks`: the
        audio's chunks in time order ((start, end) spans or objects with `start` and `end`), or
        an executor's `first(n)` giving the first n as they become known (awaitable or not)."""
        if not self.detects_language:
            return self
        first = chunks if callable(chunks) else (lambda n: chunks[:n])
        head = list(await _settled(first(1)))
        if head and self.decides_alone(_span(head[0])):
            language, confidence = await _settled(detect(head, self.detect_model, self.language_candidates))
            if confidence >= self.config.asr.language_confidence:
                return self.with_language(language)
        known = list(await _settled(first(self.detection_first_chunks)))
        sample = [known[i] for i in self.language_sample([_span(c) for c in known])]
        language, _ = await _settled(detect(sample, self.detect_model, self.language_candidates))
        return self.with_language(language)

    def asr_results(self, results: list[ChunkResult] | None = None) -> list[ChunkResult]:
        """The chunks' ASR results: the cached ones, or those just computed."""
        if self.cached.asr is not None:
            return self.cached.asr.chunks
        assert results is not None, "ASR was planned: its results are needed"
        return results

    async def timed_segments(
        self, results: list[ChunkResult], align: Callable[[list[ChunkResult]], Any]
    ) -> list[Segment]:
        """The cached alignment; else the executor's `align(results)` when the plan aligns and there is
        speech; else ASR's own segments."""
        if self.cached.aligned is not None:
            return self.cached.aligned
        if self.aligns and results:
            return await _settled(align(results))
        return self.chunk_segments(results)

    def assemble(self, duration: float, segments: list[Segment], turns: list[Turn] | None) -> Transcript:
        """The merge stage; turns are kept, only rounded to ms and sorted (never merged or clipped)."""
        language = self.language or "en"
        speaker_turns = None
        if self.diarize and turns is not None:
            segments = assign_speakers(segments, turns, word_separator(language))
            speaker_turns = normalized_turns(turns)
        return Transcript(segments, language, duration, self.models(), speaker_turns)

    def render(self, transcript: Transcript, source: str | None = None, service: dict | None = None) -> bytes:
        """`source`: the input's name (rttm's file id); `service`: the service's account, in WhisperX's JSON."""
        fmt, task, words = self.request.response_format, self.decode.task, self.request.word_timestamps
        return render(transcript, fmt, task=task, word_granularity=words, source=source, service=service)


# What a stream carries. OpenAI's: text as each chunk is final, and diarized_json's segments at
# the end. Native: WhisperX's segments as each is final (serve/streaming.py has the framings).
STREAMED_FORMATS = ("json", "text", "diarized_json")
NATIVE_STREAMED_FORMATS = ("whisperx",)


class Planner:
    """Turns requests into plans for one configuration and the ASR models it holds (their cards,
    the configured `model` first: `AsrConfig.model_names()` order)."""

    def __init__(self, config: PipelineConfig, cards: AsrCard | Sequence[AsrCard]):
        self.config = config
        cards = (cards,) if isinstance(cards, AsrCard) else tuple(cards)
        self.routes = AsrRoutes.of(cards, config.asr.model_names(), dict(config.asr.aliases))

    def plan(self, request: Request) -> Plan:
        """Validate and decide every stage; typed errors (InvalidOption, ...) before any work."""
        fmt = lookup(request.response_format, openai=request.openai)
        streamed = STREAMED_FORMATS if request.openai else NATIVE_STREAMED_FORMATS
        if request.stream and fmt.name not in streamed:
            raise StreamNotAvailable(
                f"stream=true streams response_format {', '.join(streamed)} here, not {request.response_format}"
            )
        language = (request.language or "").strip().lower() or None
        candidates = language_candidates(request.languages, language)
        if language is None and len(candidates) == 1:
            language = candidates[0]
        choices = {f.name: getattr(request, f.name) for f in fields(DecodingChoices)}
        prompt = prompt_with_keywords(request.initial_prompt, request.keywords)
        decode = DecodeOptions(**{**choices, "language": language, "initial_prompt": prompt})
        pinned = self.routes.pinned(request.model)  # an unknown name: the error lists those served
        if decode.language is None and self.routes.detector(pinned) is None:
            if candidates and "en" not in candidates:
                raise UnsupportedLanguage(
                    f"languages[] {', '.join(candidates)}: the model served is English-only; configure a "
                    "multilingual ASR model (asr_model: base)"
                )
            decode = replace(decode, language="en")  # an English-only model: nothing to identify
        card = self.routes.for_language(decode.language, decode.task, pinned)
        try:
            check_decode_options(decode, card)
        except (MultilingualModelNeeded, UnsupportedLanguage) as exc:
            if pinned is not None or self.routes.multilingual is not None:
                raise  # the model named cannot: its message says so
            what = "Translation needs" if isinstance(exc, MultilingualModelNeeded) else "Other languages need"
            raise type(exc)(f"{exc}. {what} a multilingual ASR model: configure one (asr_model: base)") from None
        if decode.language is not None:
            decode = replace(decode, model=card.model_id)
        else:
            for candidate in candidates:  # each one the vote may choose is one its model can decode
                check_decode_options(
                    replace(decode, language=candidate), self.routes.for_language(candidate, decode.task, pinned)
                )
        request.speakers.bounds()
        known = request.known_speakers
        check_names([k.name for k in known], len(known), self.config.diarize.max_known_speakers)
        if request.diarize is False and (fmt.needs_speakers or request.speakers.given or known):  # nothing may imply it
            why = "a speaker count (num_speakers, min_speakers, max_speakers) needs diarization"
            if known:
                why = "known speakers name diarization's speakers"
            if fmt.needs_speakers:
                why = f"response_format {request.response_format} lists speaker turns: it needs diarization"
            raise InvalidOption(f"{why}, but diarize is false (leave diarize out, or set it true)")
        diarize = diarizes(request)
        word_timing = needs_word_timing(request)
        decode = replace(decode, word_timestamps=word_timing)
        return Plan(
            request=request,
            decode=decode,
            word_timing=word_timing,
            align_requested=word_timing and request.align and self.config.align.enabled,
            diarize=diarize,
            config=self.config,
            routes=self.routes,
            pinned=pinned,
            vad=vad_options(self.config.vad, request.chunking),
            language_candidates=candidates if decode.language is None else (),
        )


MAX_KEYWORDS, MAX_KEYWORD_CHARS = 100, 1000


def language_candidates(languages: Sequence[str], language: str | None) -> tuple[str, ...]:
    """languages[] normalised (lower case, each once, in order); a given `language` must be one of them."""
    candidates = tuple(dict.fromkeys(x.strip().lower() for x in languages if x.strip()))
    if language is not None and candidates and language not in candidates:
        raise InvalidOption(f"language {language!r} is not among languages[] ({', '.join(candidates)})")
    return candidates


def prompt_with_keywords(prompt: str | None, keywords: Sequence[str]) -> str | None:
    """keywords[] after the prompt, comma-separated: the decoder reads them as text already heard."""
    words = [k.strip() for k in keywords if k.strip()]
    if len(words) > MAX_KEYWORDS or sum(map(len, words)) > MAX_KEYWORD_CHARS:
        raise InvalidOption(f"keywords[] may hold {MAX_KEYWORDS} entries of {MAX_KEYWORD_CHARS} characters in all")
    text = " ".join(part for part in ((prompt or "").strip(), ", ".join(words)) if part)
    return text or None


def diarizes(request: Request) -> bool:
    """When asked, when any speaker count or known speaker is given, or for a format made of speaker turns."""
    implied = request.speakers.given or bool(request.known_speakers) or FORMATS[request.response_format].needs_speakers
    return bool(request.diarize) or implied


def needs_word_timing(request: Request) -> bool:
    """Word times are computed only when the output shows them or speakers are assigned per word."""
    needed = FORMATS[request.response_format].word_times
    return diarizes(request) or needed == "always" or (needed == "asked" and request.word_timestamps)


def _span(chunk: Any) -> tuple[float, float]:
    return (chunk.start, chunk.end) if hasattr(chunk, "start") else tuple(chunk)


async def _settled(value: T | Awaitable[T]) -> T:
    """A means' result: awaited when the executor's call is asynchronous."""
    return await value if inspect.isawaitable(value) else value


def run_sync(step: Coroutine[Any, Any, T]) -> T:
    """Runs a plan step whose means are all synchronous (nothing suspends, no event loop)."""
    try:
        step.send(None)
    except StopIteration as finished:
        return finished.value
    step.close()
    raise RuntimeError("a synchronous executor's step suspended: one of its means returned an awaitable")
