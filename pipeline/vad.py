"""Speech regions -> chunks of at most 30 s (WhisperX's cut-and-merge), with the pyannote
segmentation weights that ship inside whisperx, so it works offline."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.batching import ForwardBatcher
from pipeline.intervals import EPSILON, Regions
from pipeline.models import whisperx_vad_weights
from pipeline.placement import Placement
from pipeline.schema import SAMPLE_RATE, Audio, Chunk, ms
from pipeline.torch_runtime import TorchRuntime
from pipeline.turns import FrameGrid


@dataclass(frozen=True)
class VadOptions:
    onset: float = 0.500  # WhisperX's defaults
    offset: float = 0.363
    chunk_seconds: float = 30.0
    # pyannote scores 5 s windows; WhisperX slides them by 1 s (5x overlap). A larger step
    # scores each frame fewer times: cheaper, nearly the same regions. 1.0 = WhisperX exactly;
    # 2.5 (every entry point's default) measured about 2x cheaper with WER 3.32 % vs 3.39 %
    # on the 40-file dev set.
    step_seconds: float = 2.5
    # Windows per forward; None: the device's. On CPU small forwards measured cheapest (300 s of
    # audio, 2 threads: 1.32 s at 4, 1.72 s at 32) and a long file's forward then holds a short
    # one's (sharing the ForwardBatcher) for a fraction of a second, not 2-3 s.
    batch_size: int | None = None
    runtime: TorchRuntime = TorchRuntime()  # precision and compile of the segmentation model
    # OpenAI's chunking_strategy server_vad (pipeline/chunking.py): pauses shorter than this stay
    # inside a region, and each region starts this much earlier. 0: WhisperX's regions exactly.
    min_silence_seconds: float = 0.0
    pad_onset_seconds: float = 0.0


VAD_MODEL_ID = "whisperx/pyannote-segmentation"


class SpeechDetector:
    """Holds the VAD model. Thread-safe: concurrent `analyze()` calls (the ingress runs
    several on a GPU) share the model's forward passes through one `ForwardBatcher`."""

    def __init__(self, options: VadOptions = VadOptions(), placement: Placement = Placement()):
        import torch
        from pyannote.audio import Inference, Model

        # Lightning logs a checkpoint-upgrade notice on every load of these v1 weights.
        logging.getLogger("lightning.pytorch.utilities.migration.utils").setLevel(logging.WARNING)

        self.options = options
        self.placement = placement
        self.batch_size = options.batch_size or (4 if placement.device == "cpu" else 32)
        model = options.runtime.prepare(Model.from_pretrained(str(whisperx_vad_weights())), placement, "vad")
        duration = model.specifications.duration
        # Same scoring as pyannote's VoiceActivityDetection: max over the model's speaker classes.
        self._inference = Inference(
            model,
            duration=duration,
            step=min(options.step_seconds, duration),
            batch_size=self.batch_size,
            device=torch.device(placement.torch_device),
            pre_aggregation_hook=lambda scores: np.max(scores, axis=-1, keepdims=True),
        )
        # Every window is scored on its own, so concurrent requests' windows can share a
        # forward: up to two callers' batches (SincNet's activations grow with the rows).
        self.batcher = ForwardBatcher(self._inference.infer, max_rows=2 * self.batch_size)
        self._inference.infer = self.batcher
        if options.runtime.compile:  # compile now, not in the first request
            # Long enough for a batch of several windows and pyannote's separate last one.
            seconds = duration + 2.5 * min(options.step_seconds, duration)
            noise = np.random.default_rng(0).normal(0, 0.05, (1, int(seconds * SAMPLE_RATE))).astype(np.float32)
            noise = torch.from_numpy(noise)
            self._inference({"waveform": noise, "sample_rate": SAMPLE_RATE})

    def chunks(self, audio: Audio, audio_id: str) -> list[Chunk]:
        speech = self.analyze(audio)
        return cut(audio, audio_id, speech.chunks, speech.speech)

    def analyze(self, audio: Audio, regions: VadOptions | None = None) -> SpeechMap:
        """Score the audio once; derive both the speech regions and the ASR chunks. `regions`:
        the request's thresholds, silence and padding (its plan's `vad`); the scoring (model,
        step, batch) is always this detector's own."""
        if audio.duration < 0.1:
            return SpeechMap(speech=[], chunks=[])
        scores = self._inference({"waveform": self._waveform(audio), "sample_rate": SAMPLE_RATE})
        return self._speech_map(scores, regions or self.options, audio.duration)

    def analyze_progressively(
        self,
        audio: Audio,
        regions: VadOptions | None,
        on_chunks: Callable[[list[FinalChunk]], None],
        first_windows: int = 24,
    ) -> SpeechMap:
        """`analyze`, announcing each ASR chunk to `on_chunks` (in order, with its speech) as soon
        as no later audio can change it. The windows are scored in growing pieces of the whole
        grid (pipeline.vad_pieces), so the chunks and the map returned are `analyze`'s exactly.
        `on_chunks` may raise to abandon the work."""
        from pipeline.vad_pieces import WindowGrid

        o = regions or self.options
        if audio.duration < 0.1:
            on_chunks([])
            return SpeechMap(speech=[], chunks=[])
        announced = 0
        for prefix in WindowGrid(self._inference, self._waveform(audio)).prefixes(first_windows):
            if prefix.complete:
                speech = self._speech_map(prefix.scores, o, audio.duration)
                on_chunks(final_chunks_of(speech.chunks[announced:], speech.speech, announced))
                return speech
            closed = self._speech_map(prefix.scores, o, audio.duration, open_end=prefix.end_seconds)
            # A chunk is final when a later one exists (merging closed it) and the speech inside
            # it can no longer grow: no later region, padded or joined across a pause, reaches it.
            reach = prefix.end_seconds - o.pad_onset_seconds - max(0.1, o.min_silence_seconds) - 0.5
            ready = [c for c in closed.chunks[:-1] if c[1] <= reach]
            if len(ready) > announced:
                on_chunks(final_chunks_of(ready[announced:], closed.speech, announced))
                announced = len(ready)
        raise AssertionError("the window grid ended without its complete prefix")

    def frame_grid(self) -> FrameGrid:
        """How `window_scores` scores a window (a live stream's server VAD, pipeline/turns.py)."""
        model, frames = self._inference.model, self._inference.model.receptive_field
        window = model.audio.get_num_samples(self._inference.duration)
        count = model.num_frames(window)
        return FrameGrid(window, count, round(frames.step * SAMPLE_RATE), frames[0].middle)

    def window_scores(self, samples: np.ndarray) -> np.ndarray:
        """The speech score of each frame of one window (frame_grid's samples, 16 kHz), scored
        as `analyze` scores a file's windows and in the same forwards as theirs."""
        rows = self._waveform(Audio(samples)).unsqueeze(0)  # (1 window, 1 channel, samples)
        return self._inference.pre_aggregation_hook(self._inference.infer(rows))[0, :, 0]

    def _waveform(self, audio: Audio):
        import torch

        # OpenMP's thread count is per calling thread (and Ray sets OMP_NUM_THREADS=1 in
        # fractional-CPU workers), so it is set here, in whatever thread runs the VAD.
        if self.placement.device == "cpu" and torch.get_num_threads() != self.placement.cpu_threads:
            torch.set_num_threads(self.placement.cpu_threads)
        with warnings.catch_warnings():  # the object store's samples are read-only; the VAD only reads
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(audio.samples).unsqueeze(0)

    def _speech_map(self, scores, o: VadOptions, duration: float, open_end: float | None = None) -> SpeechMap:
        """`open_end`: the scores stop there, mid-audio: a turn still active at it is left out."""
        from whisperx.vads.pyannote import Binarize
        from whisperx.vads.vad import Vad

        limit = self.options.chunk_seconds
        # WhisperX's cut-and-merge (Pyannote.merge_chunks): turns of at most `limit`, packed into
        # chunks. server_vad's silence and padding act on the turns in between (its binarizer
        # refuses them with max_duration); at 0 and 0 the chunks are WhisperX's exactly.
        cut_regions = Binarize(onset=o.onset, offset=o.offset, max_duration=limit)(scores)
        turns = [(t.start, t.end) for t in cut_regions.get_timeline()]
        if open_end is not None:
            turns = [t for t in turns if t[1] < open_end - EPSILON]
            if o.min_silence_seconds > 0 and turns:  # a later turn may yet join the last one
                turns = turns[:-1]
        turns = utterances(turns, o.min_silence_seconds, o.pad_onset_seconds, limit)
        merged = Vad.merge_chunks([_Region(*t) for t in turns], limit, o.onset, o.offset) if turns else []
        chunks = _clip_chunks([(float(m["start"]), float(m["end"])) for m in merged], duration)
        binarize = Binarize(
            onset=o.onset,
            offset=o.offset,
            min_duration_on=0.1,
            min_duration_off=max(0.1, o.min_silence_seconds),
            pad_onset=o.pad_onset_seconds,
        )
        timeline = binarize(scores).get_timeline().support()
        speech = _clip([(seg.start, seg.end) for seg in timeline], duration)
        return SpeechMap(speech=speech, chunks=chunks)


@dataclass(frozen=True)
class FinalChunk:
    """An ASR chunk the VAD will not change, announced before the rest of the audio is scored."""

    index: int
    start: float
    end: float
    speech: tuple[tuple[float, float], ...]  # the speech regions inside it (SpeechMap.speech within)


def final_chunks(speech: SpeechMap) -> list[FinalChunk]:
    """A whole pass's chunks, as the progressive one announces them."""
    return final_chunks_of(speech.chunks, speech.speech, 0)


def final_chunks_of(chunks: list[tuple[float, float]], speech, first_index: int) -> list[FinalChunk]:
    regions = Regions.of(speech)
    return [FinalChunk(first_index + i, s, e, regions.within(s, e)) for i, (s, e) in enumerate(chunks)]


@dataclass(frozen=True)
class _Region:  # what Vad.merge_chunks reads of a speech turn
    start: float
    end: float
    speaker: str = "UNKNOWN"


@dataclass(frozen=True)
class SpeechMap:
    """What the VAD found in one audio."""

    speech: list[tuple[float, float]]  # speech regions as detected (diarization embeds these)
    chunks: list[tuple[float, float]]  # regions merged up to chunk_seconds (ASR decodes these)


def whole_speech_map(duration: float, chunk_seconds: float) -> SpeechMap:
    """Audio its caller found to be one stretch of speech (a live session's server-VAD turn): no
    VAD pass, one region, cut into equal chunks of at most `chunk_seconds`, as a file's would be."""
    if duration < 0.1:
        return SpeechMap(speech=[], chunks=[])
    pieces = max(1, math.ceil(duration / chunk_seconds - 1e-9))
    bounds = [ms(duration * i / pieces) for i in range(pieces + 1)]
    return SpeechMap(speech=[(0.0, bounds[-1])], chunks=list(zip(bounds, bounds[1:], strict=False)))


def cut(
    audio: Audio,
    audio_id: str,
    regions: list[tuple[float, float]],
    speech: Sequence[Sequence[float]] | None = None,
) -> list[Chunk]:
    """Chunks that view (not copy) the audio's samples. `speech`: the VAD's speech regions
    (`SpeechMap.speech`); each chunk keeps those inside it, so word times stay on speech."""
    speech_regions = Regions.of(speech or ())
    return [
        Chunk(
            audio_id=audio_id,
            index=i,
            start=start,
            end=end,
            samples=audio.samples[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)],
            speech=speech_regions.within(start, end),
        )
        for i, (start, end) in enumerate(regions)
    ]


def utterances(
    turns: list[tuple[float, float]], min_silence: float, pad_onset: float, limit: float
) -> list[tuple[float, float]]:
    """Turns with pauses under `min_silence` closed, each then started `pad_onset` earlier, never
    into the one before and never past `limit` seconds long (a chunk must hold the whole)."""
    out: list[tuple[float, float]] = []
    for start, end in turns:
        if out and start - out[-1][1] < min_silence and end - out[-1][0] <= limit:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    if pad_onset <= 0:
        return out
    padded, previous_end = [], 0.0
    for start, end in out:
        padded.append((max(previous_end, start - pad_onset, end - limit), end))
        previous_end = end
    return padded


def _clip(regions: list[tuple[float, float]], duration: float) -> list[tuple[float, float]]:
    return [(ms(s), ms(e)) for s, e in Regions.of(regions).clip(0.0, duration, EPSILON)]


def _clip_chunks(chunks: list[tuple[float, float]], duration: float) -> list[tuple[float, float]]:
    """The ASR chunks inside the audio, each kept whole (never joined: a chunk stays <= 30 s)."""
    clipped = [(max(0.0, s), min(duration, e)) for s, e in chunks]
    return [(ms(s), ms(e)) for s, e in clipped if e - s >= EPSILON]
