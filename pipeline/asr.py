"""Batched Whisper decoding of chunks that may come from different audios.

This is the seam the service batches across requests on: `transcribe_chunks` takes any
list of chunks, groups them by decode options, runs each group in batches of `batch_size`
(one encoder pass and one beam search per batch), then times every word with Whisper's
cross-attention alignment, so words have times even without an alignment model.
Decoding matches WhisperX's batched pipeline (no timestamps, beam 5, same prompt).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pipeline.errors import InvalidOption, MultilingualModelNeeded, UnsupportedLanguage
from pipeline.models import AsrCard, compute_type_for, resolve_asr_model, weights_fingerprint
from pipeline.placement import Placement
from pipeline.schema import SAMPLE_RATE, Chunk, ChunkResult, Segment, Word
from pipeline.word_times import bound_words

log = logging.getLogger(__name__)

N_SAMPLES = 30 * SAMPLE_RATE
HOP_LENGTH = 160
SENTENCE_END = (".", "?", "!", "。", "？", "！")
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


@dataclass(frozen=True)
class AsrConfig:
    model: str = "bundled"  # the default model; a multilingual one also identifies languages
    # An English-only model that decodes English audio in `model`'s place (faster: tiny.en beside
    # base on CPU); pipeline/routing.py has the rule. None: `model` decodes everything.
    english_model: str | None = None
    # Names a request's `model` may use besides the models' own: OpenAI's whisper-1 -> the rule.
    aliases: tuple[tuple[str, str], ...] = (("whisper-1", "auto"),)
    compute_type: str | None = None  # None: int8 on CPU, float16 on GPU
    # CTranslate2 workers sharing the placement's threads. Measured on 2 cores (tiny.en int8,
    # 16 LibriSpeech chunks): two 1-thread workers decoding two batches at once ran 50.8x real
    # time; one 2-thread worker 35.1x (batch 4) and 25.0x (batch 1). None = auto: on CPU
    # min(2, threads) workers; on GPU 1 (each worker holds its own copy of the model).
    num_workers: int | None = None
    batch_size: int = 16
    language_detection_chunks: int = 5  # chunks voted over when the language is not given
    # ... the longest among the first this many: a stream identifies the language (and starts
    # its first words) once these are found, not after the VAD has scored the whole file.
    language_detection_first_chunks: int = 8
    # A first chunk at least this long whose language the model gives this probability decides
    # alone, before the vote (faster-whisper too stops at its first confident segment): a stream's
    # first words then wait for one chunk, not eight. The dev set's chunks all scored >= 0.97
    # (Whisper base); less sure ones are voted on. A confidence above 1: always the vote.
    language_confidence: float = 0.9
    language_confident_seconds: float = 10.0
    # The language's encoder pass first sees each sampled chunk's own frames (plus 1 s, at least
    # 2 s), not a window padded to 30 s; only when that pass is less than language_trim_confidence sure does
    # WhisperX's padded window decide. On the 47 dev files in 8 languages the trimmed pass named
    # the padded one's language every time, >= 0.93 sure, for a quarter of the CPU (0.13 s
    # against 0.51 s a file, base, one thread: benchmarks/bench_language_id.py); on short
    # synthetic (espeak-ng) clips it was unsure or wrong (Latin, Russian), so they take both
    # passes. False: the padded window alone.
    language_detection_trim: bool = True
    language_trim_confidence: float = 0.9  # a trimmed pass this sure decides; below, the padded window

    def model_names(self) -> tuple[str, ...]:
        """The models to load, `model` first."""
        extra = self.english_model
        return (self.model,) if not extra or extra == self.model else (self.model, extra)


@dataclass(frozen=True)
class DecodingChoices:
    """What a user chooses about decoding (a `pipeline.plan.Request` carries these too)."""

    language: str | None = None
    task: str = "transcribe"
    initial_prompt: str | None = None
    temperature: float = 0.0
    beam_size: int = 5


@dataclass(frozen=True)
class DecodeOptions(DecodingChoices):
    """One request's decoding as planned. Chunks that share them can share a batch."""

    word_timestamps: bool = True  # Whisper cross-attention word times (the plan decides)
    model: str = ""  # the id of the model that decodes (the plan routes; "": the only one held)


def parallelism(config: AsrConfig, placement: Placement) -> tuple[int, int]:
    """(workers, threads per worker) for CTranslate2 within the placement's threads."""
    if placement.device == "cuda":
        return config.num_workers or 1, placement.cpu_threads
    workers = config.num_workers or max(1, min(2, placement.cpu_threads))
    return workers, max(1, placement.cpu_threads // workers)


def check_decode_options(options: DecodeOptions, card: AsrCard) -> None:
    """Typed errors for options the model cannot honour (the planner calls this for every entry point)."""
    model_id, multilingual, languages = card.model_id, card.multilingual, card.languages
    if options.task not in ("transcribe", "translate"):
        raise InvalidOption(f"task must be 'transcribe' or 'translate', not {options.task!r}")
    if options.task == "translate" and not multilingual:
        raise MultilingualModelNeeded(f"{model_id} is English-only and cannot translate")
    if options.language is not None and options.language not in languages:
        raise UnsupportedLanguage(
            f"language {options.language!r} is not supported by {model_id}; supported: {', '.join(languages)}"
        )
    if not 0.0 <= options.temperature <= 1.0:
        raise InvalidOption("temperature must be between 0 and 1")
    if not 1 <= options.beam_size <= 16:
        raise InvalidOption("beam_size must be between 1 and 16")
    if options.initial_prompt is not None and len(options.initial_prompt) > 2000:
        raise InvalidOption("prompt must be at most 2000 characters")


def detection_frames(chunks: Sequence[Chunk]) -> int:
    """The frames the language's encoder pass needs: the longest chunk's, plus 1 s of the
    padding Whisper was trained with, at least 2 s, even (the encoder halves them), at most 30 s."""
    longest = max(min(len(c.samples), N_SAMPLES) for c in chunks)
    frames = -(-longest // HOP_LENGTH) + 100
    return min(N_SAMPLES // HOP_LENGTH, max(200, frames + frames % 2))


def log_mel_30s(samples, n_mels: int):
    """whisperx's `log_mel_spectrogram` of the samples zero-padded to 30 s, equal to it bit for
    bit, without the Fourier transforms of the padding: a frame whose window starts past the
    audio holds zeros only, so its power is 0. A 5 s chunk took 7.8 ms, now 2.8 (one thread)."""
    import torch
    from whisperx.audio import N_FFT, log_mel_spectrogram, mel_filters

    length = samples.shape[0]
    if length >= N_SAMPLES - 2 * N_FFT:
        return log_mel_spectrogram(samples, n_mels=n_mels, padding=N_SAMPLES - length)
    # Zeros past the audio for every window that reaches into it and for the reflection at the
    # end (half a window): those frames are the padded signal's exactly.
    padded = -(-(length + N_FFT) // HOP_LENGTH) * HOP_LENGTH
    audio = torch.nn.functional.pad(samples, (0, padded - length))
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=torch.hann_window(N_FFT), return_complex=True)
    power = stft[..., :-1].abs() ** 2
    full = torch.zeros((power.shape[0], N_SAMPLES // HOP_LENGTH), dtype=power.dtype)
    full[:, : power.shape[1]] = power
    # the same (n_mels x 201) @ (201 x 3000) product as the padded call: the same rounding
    mel = mel_filters(audio.device, n_mels) @ full
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


class Transcriber:
    def __init__(self, config: AsrConfig = AsrConfig(), placement: Placement = Placement()):
        from whisperx.asr import WhisperModel

        self.config = config
        self.placement = placement
        resolved = resolve_asr_model(config.model)
        self.model_id = resolved.model_id
        self.weights = weights_fingerprint(resolved.path)
        self.device = placement.device
        self.compute_type = compute_type_for(config.compute_type, self.device)
        self.num_workers, self.cpu_threads = parallelism(config, placement)
        self._model = WhisperModel(
            str(resolved.path),
            device=self.device,
            device_index=placement.gpu_index,
            compute_type=self.compute_type,
            cpu_threads=self.cpu_threads,
            num_workers=self.num_workers,
            local_files_only=True,
        )
        self._n_mels = self._model.feat_kwargs.get("feature_size") or 80

    # --- language -------------------------------------------------------------------------

    @property
    def card(self) -> AsrCard:
        """What the loaded model can do (equals `describe_asr_model` read from its files)."""
        multilingual, languages = bool(self._model.model.is_multilingual), tuple(self._model.supported_languages)
        return AsrCard(self.model_id, multilingual, languages, self.weights, self.compute_type)

    def detect_language(self, chunks: Sequence[Chunk], candidates: Sequence[str] = ()) -> tuple[str, float]:
        """Vote over the given chunks (the plan picks which), among `candidates` when given
        (OpenAI's languages[]). English-only model or no speech: English, or the first candidate."""
        if not self._model.model.is_multilingual or not chunks:
            return (candidates[0] if candidates else "en"), 1.0 if chunks else 0.0
        features = self._features(chunks)  # once: the padded pass, when needed, reuses them
        if self.config.language_detection_trim:
            language, confidence = self._vote(features, candidates, detection_frames(chunks))
            if confidence >= self.config.language_trim_confidence:
                return language, confidence
        return self._vote(features, candidates, None)

    def _vote(self, features: np.ndarray, candidates: Sequence[str], frames: int | None) -> tuple[str, float]:
        encoded = self._encode_features(features[:, :, :frames] if frames else features)
        totals: dict[str, float] = defaultdict(float)
        for per_chunk in self._model.model.detect_language(encoded):
            for token, prob in per_chunk:
                if not candidates or token[2:-2] in candidates:
                    totals[token[2:-2]] += prob
        language = max(totals, key=totals.get)
        return language, totals[language] / len(features)

    # --- decoding --------------------------------------------------------------------------

    def transcribe_chunks(
        self,
        chunks: Sequence[Chunk],
        options: DecodeOptions | Sequence[DecodeOptions],
    ) -> list[ChunkResult]:
        """Decode chunks from any number of audios; results come back in input order.
        Each option's language must be resolved (the plan does it)."""
        if isinstance(options, DecodeOptions):
            options = [options] * len(chunks)
        if len(options) != len(chunks):
            raise ValueError("one DecodeOptions per chunk")
        results: list[ChunkResult | None] = [None] * len(chunks)
        groups: dict[DecodeOptions, list[int]] = defaultdict(list)
        for i, opt in enumerate(options):
            if opt.language is None:
                raise ValueError("DecodeOptions.language must be resolved before decoding")
            groups[opt].append(i)
        batches = []
        for opt, indices in groups.items():
            # Enough batches to give every CTranslate2 worker one, none larger than batch_size.
            step = max(1, min(self.config.batch_size, -(-len(indices) // self.num_workers)))
            batches += [(opt, indices[start : start + step]) for start in range(0, len(indices), step)]

        def run(batch: tuple[DecodeOptions, list[int]]) -> None:
            opt, members = batch
            for i, result in zip(members, self._decode_batch([chunks[i] for i in members], opt)):
                results[i] = result

        if self.num_workers > 1 and len(batches) > 1:
            # CTranslate2 decodes concurrent calls in parallel, one per worker.
            with ThreadPoolExecutor(max_workers=min(self.num_workers, len(batches))) as pool:
                list(pool.map(run, batches))
        else:
            for batch in batches:
                run(batch)
        return results  # type: ignore[return-value]

    def _features(self, chunks: Sequence[Chunk]) -> np.ndarray:
        """(chunks, mels, 3000) log-Mel features of each chunk's 30 s window."""
        import torch

        return np.stack(
            [
                log_mel_30s(torch.from_numpy(np.ascontiguousarray(c.samples[:N_SAMPLES])), self._n_mels).numpy()
                for c in chunks
            ]
        )

    def _encode(self, chunks: Sequence[Chunk]):
        return self._encode_features(self._features(chunks))

    def _encode_features(self, features: np.ndarray):
        """The encoder's output for features (a slice of their frames: the trimmed language pass)."""
        import ctranslate2

        batch = np.ascontiguousarray(features.astype(np.float32))
        return self._model.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=False)

    def _tokenizer(self, options: DecodeOptions):
        from faster_whisper.tokenizer import Tokenizer

        multilingual = bool(self._model.model.is_multilingual)
        return Tokenizer(self._model.hf_tokenizer, multilingual, task=options.task, language=options.language)

    def _decode_batch(self, chunks: Sequence[Chunk], options: DecodeOptions) -> list[ChunkResult]:
        tokenizer = self._tokenizer(options)
        previous = []
        if options.initial_prompt:
            previous = tokenizer.encode(" " + options.initial_prompt.strip())
        prompt = self._model.get_prompt(tokenizer, previous, without_timestamps=True)
        encoded = self._encode(chunks)
        sampling = options.temperature > 0
        generated = self._model.model.generate(
            encoded,
            [prompt] * len(chunks),
            beam_size=1 if sampling else options.beam_size,
            patience=1,
            length_penalty=1,
            max_length=self._model.max_length,
            suppress_blank=True,
            suppress_tokens=[-1],
            no_repeat_ngram_size=0,
            repetition_penalty=1,
            return_scores=True,
            sampling_temperature=options.temperature if sampling else 1.0,
            sampling_topk=0 if sampling else 1,
        )
        token_lists = [[t for t in g.sequences_ids[0] if t < tokenizer.eot] for g in generated]
        avg_logprobs = [g.scores[0] * (len(g.sequences_ids[0]) ** 1) / (len(g.sequences_ids[0]) + 1) for g in generated]
        alignments: list[list[dict]] = [[] for _ in chunks]
        if options.word_timestamps:
            aligned = [i for i, tokens in enumerate(token_lists) if tokens]
            if aligned:
                frames = [min(len(chunks[i].samples), N_SAMPLES) // HOP_LENGTH for i in aligned]
                found = self._model.model.align(
                    _select(encoded, aligned),
                    tokenizer.sot_sequence,
                    [token_lists[i] for i in aligned],
                    frames,
                    median_filter_width=7,
                )
                for i, result in zip(aligned, found):
                    alignments[i] = _word_timings(tokenizer, token_lists[i], result, self._model.tokens_per_second)
        out = []
        for chunk, tokens, logprob, alignment in zip(chunks, token_lists, avg_logprobs, alignments):
            text = tokenizer.decode(tokens)
            segments = _segments(chunk, text, alignment, float(logprob))
            out.append(
                ChunkResult(
                    audio_id=chunk.audio_id,
                    index=chunk.index,
                    language=options.language or "en",
                    segments=segments,
                    start=chunk.start,
                    end=chunk.end,
                )
            )
        return out


def _select(encoded, indices: list[int]):
    """Rows of an encoder output, as a new StorageView (align needs only the aligned rows)."""
    import ctranslate2

    array = np.asarray(encoded) if encoded.device == "cpu" else None
    if array is None:  # on GPU: go through torch, which reads CUDA StorageViews zero-copy
        import torch

        tensor = torch.as_tensor(encoded, device="cuda")[indices].contiguous()
        return ctranslate2.StorageView.from_array(tensor)
    if len(indices) == array.shape[0]:
        return encoded
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array[indices]))


def _word_timings(tokenizer, tokens: list[int], result, tokens_per_second: float) -> list[dict]:
    """Cross-attention DTW path -> words with times relative to the chunk start."""
    from faster_whisper.transcribe import merge_punctuations

    words, word_tokens = tokenizer.split_to_word_tokens(tokens + [tokenizer.eot])
    if len(word_tokens) <= 1:
        return []
    text_indices = np.array([pair[0] for pair in result.alignments])
    time_indices = np.array([pair[1] for pair in result.alignments])
    if len(text_indices) == 0:
        return []
    boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / tokens_per_second
    probs = np.asarray(result.text_token_probs)
    timings = []
    for k, (word, toks) in enumerate(zip(words[:-1], word_tokens[:-1])):
        lo, hi = boundaries[k], boundaries[k + 1]
        timings.append(
            {
                "word": word,
                "tokens": toks,
                "start": float(jump_times[min(lo, len(jump_times) - 1)]),
                "end": float(jump_times[min(hi, len(jump_times) - 1)]),
                "probability": float(np.mean(probs[lo:hi])) if hi > lo and len(probs) >= hi else 0.0,
            }
        )
    merge_punctuations(timings, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
    return [t for t in timings if t["word"]]


def _segments(chunk: Chunk, text: str, timings: list[dict], avg_logprob: float) -> list[Segment]:
    """Words placed in the audio's time, split into sentence segments."""
    if not text.strip():
        return []
    if not timings:
        return [Segment(start=chunk.start, end=chunk.end, text=text.strip(), avg_logprob=avg_logprob)]
    words: list[Word] = []
    previous_start = chunk.start
    for t in timings:
        start = min(max(chunk.start + t["start"], previous_start), chunk.end)
        end = min(max(chunk.start + t["end"], start), chunk.end)
        words.append(Word(word=t["word"], start=round(start, 3), end=round(end, 3), score=round(t["probability"], 3)))
        previous_start = start
    bound_words(words, chunk.speech)  # no word spans a pause or outlasts its length
    segments: list[Segment] = []
    current: list[Word] = []
    for word in words:
        current.append(word)
        if word.word.strip().endswith(SENTENCE_END):
            segments.append(_segment_of(current, avg_logprob))
            current = []
    if current:
        segments.append(_segment_of(current, avg_logprob))
    for seg in segments:
        for w in seg.words:
            w.word = w.word.strip()
    return segments


def _segment_of(words: list[Word], avg_logprob: float) -> Segment:
    text = "".join(w.word for w in words).strip()
    return Segment(
        start=words[0].start, end=max(w.end for w in words), text=text, words=list(words), avg_logprob=avg_logprob
    )
