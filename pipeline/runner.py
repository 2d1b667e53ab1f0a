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
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from pipeline.asr import AsrConfig, DecodeOptions, Transcriber
from pipeline.audio import AudioLimits, load_audio
from pipeline.errors import PipelineError
from pipeline.schema import Audio, Chunk, ChunkResult, Transcript
from pipeline.vad import SpeechDetector, VadOptions

Source = str | os.PathLike | bytes


@dataclass(frozen=True)
class PipelineConfig:
    asr: AsrConfig = field(default_factory=AsrConfig)
    vad: VadOptions = field(default_factory=VadOptions)
    limits: AudioLimits = field(default_factory=AudioLimits)


@dataclass
class FileResult:
    """One input's outcome: a transcript, or the typed error that stopped it."""

    source: str
    transcript: Transcript | None = None
    error: PipelineError | None = None


def assemble(audio: Audio, results: Sequence[ChunkResult], language: str, models: dict[str, str]) -> Transcript:
    ordered = sorted(results, key=lambda r: r.index)
    segments = [seg for r in ordered for seg in r.segments]
    return Transcript(segments=segments, language=language, duration=audio.duration, models=models)


class LocalPipeline:
    def __init__(self, config: PipelineConfig = PipelineConfig()):
        self.config = config
        self.transcriber = Transcriber(config.asr)
        self.vad = SpeechDetector(config.vad, device=self.transcriber.device)

    @property
    def models(self) -> dict[str, str]:
        return {"asr": self.transcriber.model_id, "vad": "whisperx/pyannote-segmentation",
                "align": "whisper-cross-attention"}

    def transcribe(self, source: Source, options: DecodeOptions = DecodeOptions()) -> Transcript:
        """One input; raises the pipeline's typed errors."""
        result = next(iter(self.transcribe_many([source], options)))
        if result.error is not None:
            raise result.error
        assert result.transcript is not None
        return result.transcript

    def transcribe_many(self, sources: Iterable[Source], options: DecodeOptions = DecodeOptions()
                        ) -> Iterator[FileResult]:
        """Yields one FileResult per source, in input order; a bad file does not stop the rest."""
        self.transcriber.check_options(options)
        batch_size = max(1, self.config.asr.batch_size)
        pending: deque[_Pending] = deque()      # files decoded, in order, awaiting chunks
        queue: list[tuple[Chunk, DecodeOptions]] = []

        def flush(up_to_full_batches: bool) -> None:
            while queue and (len(queue) >= batch_size or not up_to_full_batches):
                batch, queue[:] = queue[:batch_size], queue[batch_size:]
                results = self.transcriber.transcribe_chunks([c for c, _ in batch], [o for _, o in batch])
                by_id = {p.audio_id: p for p in pending}
                for result in results:
                    by_id[result.audio_id].results.append(result)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as decoder:
            for n, (name, decoded) in enumerate(_prefetch(decoder, sources, self.config.limits)):
                item = _Pending(audio_id=f"{n}", source=name)
                pending.append(item)
                try:
                    audio = decoded.result()
                    chunks = self.vad.chunks(audio, item.audio_id)
                    resolved = self.transcriber.resolve_options(options, chunks)
                except PipelineError as exc:
                    item.error = exc
                else:
                    item.audio, item.language, item.expected = audio, resolved.language, len(chunks)
                    queue.extend((c, resolved) for c in chunks)
                flush(up_to_full_batches=True)
                yield from self._completed(pending)
            flush(up_to_full_batches=False)
            yield from self._completed(pending)

    def _completed(self, pending: deque[_Pending]) -> Iterator[FileResult]:
        while pending and pending[0].done:
            item = pending.popleft()
            if item.error is not None:
                yield FileResult(source=item.source, error=item.error)
            else:
                assert item.audio is not None and item.language is not None
                yield FileResult(source=item.source,
                                 transcript=assemble(item.audio, item.results, item.language, self.models))


@dataclass
class _Pending:
    audio_id: str
    source: str
    audio: Audio | None = None
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
