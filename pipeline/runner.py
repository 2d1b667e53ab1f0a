"""The library executor (the CLI's engine, the benchmark baseline): a plan run in one process.
Consecutive files' chunks share ASR batches; the next file decodes while the current batch runs."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path

from pipeline.align import Aligner
from pipeline.asr import DecodeOptions
from pipeline.asr_models import AsrModels
from pipeline.audio import AudioLimits, load_audio
from pipeline.config import PipelineConfig
from pipeline.diarize import Diarizer
from pipeline.errors import PipelineError
from pipeline.placement import Placement
from pipeline.plan import Plan, Planner, Request, run_sync
from pipeline.schema import Audio, Chunk, ChunkResult, Transcript
from pipeline.vad import SpeechDetector, SpeechMap, cut

Source = str | os.PathLike | bytes


@dataclass
class FileResult:
    """One input's outcome: a transcript, or the typed error that stopped it."""

    source: str
    transcript: Transcript | None = None
    error: PipelineError | None = None


class LocalPipeline:
    def __init__(self, config: PipelineConfig = PipelineConfig(), placement: Placement | None = None):
        self.config = config
        self.placement = placement or Placement.local_cpu()
        self.transcriber = AsrModels(config.asr, self.placement)
        self.planner = Planner(config, self.transcriber.cards)
        self.vad = SpeechDetector(config.vad, self.placement)
        self.aligner = Aligner(config.align, self.placement)

    @cached_property
    def diarizer(self) -> Diarizer:
        """Loaded on first use: most requests do not diarize."""
        return Diarizer(self.config.diarize, self.placement)

    def plan(self, request: Request = Request()) -> Plan:
        return self.planner.plan(request)

    def transcribe(self, source: Source, request: Request = Request()) -> Transcript:
        """One input; raises the pipeline's typed errors."""
        result = next(iter(self.transcribe_many([source], request)))
        if result.error is not None:
            raise result.error
        assert result.transcript is not None
        return result.transcript

    def transcribe_many(self, sources: Iterable[Source], request: Request = Request()) -> Iterator[FileResult]:
        """Yields one FileResult per source, in input order; a bad file does not stop the rest."""
        plan = self.planner.plan(request)  # invalid options fail before any file is read
        batch_size = max(1, self.config.asr.batch_size)
        workers = self.transcriber.first.num_workers
        pending: deque[_Pending] = deque()  # files decoded, in order, awaiting chunks
        queue: list[tuple[Chunk, DecodeOptions]] = []

        def flush(up_to_full_batches: bool) -> None:
            # With several CTranslate2 workers, gather that many batches: they decode in parallel.
            while queue and (len(queue) >= batch_size * workers or not up_to_full_batches):
                taken = queue[: batch_size * workers]
                del queue[: batch_size * workers]
                by_id = {p.audio_id: p for p in pending}
                for result in self.transcriber.transcribe_chunks([c for c, _ in taken], [o for _, o in taken]):
                    by_id[result.audio_id].results.append(result)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as decoder:
            for n, (name, decoded) in enumerate(_prefetch(decoder, sources, self.config.limits)):
                item = _Pending(audio_id=f"{n}", source=name)
                pending.append(item)
                try:
                    audio = decoded.result()
                    speech = self.vad.analyze(audio, plan.vad)
                    chunks = cut(audio, item.audio_id, speech.chunks, speech.speech)
                    item.plan = run_sync(plan.detect_language(chunks, self._detect))
                except PipelineError as exc:
                    item.error = exc
                else:
                    item.audio, item.speech = audio, speech
                    item.expected = len(chunks)
                    queue.extend((c, item.plan.decode) for c in chunks)
                flush(up_to_full_batches=True)
                yield from self._completed(pending)
            flush(up_to_full_batches=False)
            yield from self._completed(pending)

    def _detect(self, sample: list[Chunk], model: str, candidates: tuple[str, ...]) -> tuple[str, float]:
        """The language step's means: (language, confidence) over the chunks the plan sampled."""
        return self.transcriber.detect_language(sample, model, candidates)

    def _completed(self, pending: deque[_Pending]) -> Iterator[FileResult]:
        while pending and pending[0].done:
            item = pending.popleft()
            if item.error is not None:
                yield FileResult(source=item.source, error=item.error)
                continue
            plan, audio, speech = item.plan, item.audio, item.speech
            assert plan is not None and audio is not None and speech is not None
            try:
                turns = (
                    self.diarizer.diarize(audio, speech.speech, plan.speakers, plan.speaker_references())
                    if plan.diarize
                    else None
                )
                align = partial(self.aligner.align, audio, language=plan.language)
                segments = run_sync(plan.timed_segments(item.results, align))
                transcript = plan.assemble(audio.duration, segments, turns)
            except PipelineError as exc:
                yield FileResult(source=item.source, error=exc)
            else:
                yield FileResult(source=item.source, transcript=transcript)


_SHARED: dict[str, LocalPipeline] = {}


def shared_pipeline(config: PipelineConfig = PipelineConfig(), placement: Placement | None = None) -> LocalPipeline:
    """One LocalPipeline per (config, placement) in this process: its models load once."""
    placement = placement or Placement.local_cpu()
    key = repr((config, placement))  # by value: the config holds a dict, so it has no hash
    if key not in _SHARED:
        _SHARED[key] = LocalPipeline(config, placement)
    return _SHARED[key]


@dataclass
class _Pending:
    audio_id: str
    source: str
    audio: Audio | None = None
    speech: SpeechMap | None = None
    plan: Plan | None = None
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
