"""The stages chained in one process, for one or many files: the library entry point, the
CLI's engine and the twin of the benchmark baseline.

Chunks from consecutive files share ASR batches (the same seam the service batches across
requests on), and the next file is decoded by ffmpeg while the current batch decodes.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable, Iterator

from pipeline.align import AlignConfig, Aligner, word_separator
from pipeline.asr import AsrConfig, DecodeOptions, Transcriber
from pipeline.audio import AudioLimits, load_audio
from pipeline.diarize import DiarizeConfig, Diarizer, SpeakerCount
from pipeline.errors import PipelineError
from pipeline.merge import assign_speakers
from pipeline.schema import Audio, Chunk, ChunkResult, Segment, Transcript, Turn
from pipeline.vad import SpeechDetector, SpeechMap, VadOptions, cut

Source = str | os.PathLike | bytes


@dataclass(frozen=True)
class PipelineConfig:
    asr: AsrConfig = field(default_factory=AsrConfig)
    vad: VadOptions = field(default_factory=VadOptions)
    limits: AudioLimits = field(default_factory=AudioLimits)
    align: AlignConfig = field(default_factory=AlignConfig)
    diarize: DiarizeConfig = field(default_factory=DiarizeConfig)


@dataclass(frozen=True)
class JobOptions:
    """What one request asks for."""

    decode: DecodeOptions = field(default_factory=DecodeOptions)
    align: bool = True                 # use the configured alignment model, if any
    diarize: bool = False
    speakers: SpeakerCount = field(default_factory=SpeakerCount)


@dataclass
class FileResult:
    """One input's outcome: a transcript, or the typed error that stopped it."""

    source: str
    transcript: Transcript | None = None
    error: PipelineError | None = None


def assemble(duration: float, segments: list[Segment], language: str, turns: list[Turn] | None,
             models: dict[str, str]) -> Transcript:
    """Timed segments (+ speaker turns) -> the transcript. Shared with the service."""
    if turns is not None:
        segments = assign_speakers(segments, turns, word_separator(language))
    return Transcript(segments=segments, language=language, duration=duration, models=dict(models))


class LocalPipeline:
    def __init__(self, config: PipelineConfig = PipelineConfig()):
        self.config = config
        self.transcriber = Transcriber(config.asr)
        self.vad = SpeechDetector(config.vad, device=self.transcriber.device)
        self.aligner = Aligner(config.align)

    @cached_property
    def diarizer(self) -> Diarizer:
        """Loaded on first use: most requests do not diarize."""
        return Diarizer(self.config.diarize)

    def models(self, diarize: bool) -> dict[str, str]:
        models = {"asr": self.transcriber.model_id, "vad": "whisperx/pyannote-segmentation"}
        if diarize:
            models["diarize"] = self.diarizer.model_id
        return models

    def transcribe(self, source: Source, options: JobOptions | DecodeOptions = JobOptions()) -> Transcript:
        """One input; raises the pipeline's typed errors."""
        result = next(iter(self.transcribe_many([source], options)))
        if result.error is not None:
            raise result.error
        assert result.transcript is not None
        return result.transcript

    def transcribe_many(self, sources: Iterable[Source], options: JobOptions | DecodeOptions = JobOptions()
                        ) -> Iterator[FileResult]:
        """Yields one FileResult per source, in input order; a bad file does not stop the rest."""
        if isinstance(options, DecodeOptions):
            options = JobOptions(decode=options)
        self.transcriber.check_options(options.decode)
        options.speakers.bounds()
        batch_size = max(1, self.config.asr.batch_size)
        workers = self.transcriber.num_workers
        pending: deque[_Pending] = deque()      # files decoded, in order, awaiting chunks
        queue: list[tuple[Chunk, DecodeOptions]] = []

        def flush(up_to_full_batches: bool) -> None:
            # With several CTranslate2 workers, gather that many batches: they decode in parallel.
            while queue and (len(queue) >= batch_size * workers or not up_to_full_batches):
                taken = queue[:batch_size * workers]
                del queue[:batch_size * workers]
                by_id = {p.audio_id: p for p in pending}
                for result in self.transcriber.transcribe_chunks([c for c, _ in taken], [o for _, o in taken]):
                    by_id[result.audio_id].results.append(result)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as decoder:
            for n, (name, decoded) in enumerate(_prefetch(decoder, sources, self.config.limits)):
                item = _Pending(audio_id=f"{n}", source=name)
                pending.append(item)
                try:
                    audio = decoded.result()
                    speech = self.vad.analyze(audio)
                    chunks = cut(audio, item.audio_id, speech.chunks)
                    resolved = self.transcriber.resolve_options(options.decode, chunks)
                except PipelineError as exc:
                    item.error = exc
                else:
                    item.audio, item.speech, item.language = audio, speech, resolved.language
                    item.expected = len(chunks)
                    queue.extend((c, resolved) for c in chunks)
                flush(up_to_full_batches=True)
                yield from self._completed(pending, options)
            flush(up_to_full_batches=False)
            yield from self._completed(pending, options)

    def _completed(self, pending: deque[_Pending], options: JobOptions) -> Iterator[FileResult]:
        while pending and pending[0].done:
            item = pending.popleft()
            if item.error is not None:
                yield FileResult(source=item.source, error=item.error)
                continue
            assert item.audio is not None and item.language is not None and item.speech is not None
            try:
                turns = (self.diarizer.diarize(item.audio, item.speech.speech, options.speakers)
                         if options.diarize else None)
                aligner = self.aligner if options.align else Aligner()
                segments = aligner.align(item.audio, item.results, item.language)
                models = {**self.models(options.diarize), "align": aligner.model_id(item.language)}
                transcript = assemble(item.audio.duration, segments, item.language, turns, models)
            except PipelineError as exc:
                yield FileResult(source=item.source, error=exc)
            else:
                yield FileResult(source=item.source, transcript=transcript)


@dataclass
class _Pending:
    audio_id: str
    source: str
    audio: Audio | None = None
    speech: SpeechMap | None = None
    language: str | None = None
    expected: int = -1
    results: list[ChunkResult] = field(default_factory=list)
    error: PipelineError | None = None

    @property
    def done(self) -> bool:
        return self.error is not None or (self.expected >= 0 and len(self.results) == self.expected)


def _prefetch(pool: ThreadPoolExecutor, sources: Iterable[Source], limits: AudioLimits):
    """Yield (name, future audio), keeping one decode ahead of the consumer."""
    ahead: deque = deque()
    for source in sources:
        name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(Path(source))
        ahead.append((name, pool.submit(load_audio, source, limits)))
        if len(ahead) > 1:
            yield ahead.popleft()
    while ahead:
        yield ahead.popleft()
