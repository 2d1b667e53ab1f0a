"""Question: how fast is each stage on one accelerator, and which of the seed's optimisations pay?

One self-contained command that fits one `device` call; every row is printed and appended to
--out as soon as it is measured, so a run cut short keeps what it measured (--deadline-s
skips the rows left after that many seconds).

    .venv/bin/python -m benchmarks.bench_gpu                  # here: CPU, bundled tiny.en
    python3 -m benchmarks.bench_gpu --deadline-s 480 --out $OUT/bench_gpu.md   # on a GPU

On a GPU with no weights (the device machine has no internet) the ASR model is a
large-v3-turbo with random weights whose every chunk decodes exactly --tokens tokens
(benchmarks/random_whisper.py): an honest speed, no WER. On the CPU it is the real bundled
model on real speech. The audio is pyannote-audio's sample.wav (shipped in its wheel) tiled
into --files files of --minutes minutes. Every ASR row decodes text only (plain WhisperX
times no words) after a VAD sliding 1 s, as WhisperX's does.

Sections (--sections):
  asr      plain WhisperX (load_model + transcribe, one file at a time) at batch 16 and the
           largest batch vs this project's pipeline (VAD per file, chunks of consecutive files
           batched together: the service's cross-request seam) at several batch sizes, then
           ASR alone (chunks ready) at those batch sizes: the engine's ceiling
  compute  ASR alone per compute type (GPU: float16, int8_float16; CPU: int8, float32)
  torch    VAD segmentation, speaker encoder and a wav2vec2-base-sized aligner: eager vs
           torch.compile, and float16 / bfloat16 on a GPU; load, first call (compiling what
           load did not), steady run, and each output's difference from float32 eager
  batching the torch stages across requests (pipeline/batching.py): many 30 s requests through
           one VAD and one offline diarizer, one call at a time vs several at once (as a replica
           with concurrent_calls runs them), with the forwards and rows per forward each took
  service  the Serve graph with N clients (needs ray and real weights: random weights do
           not stop decoding where speech ends)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

SECTIONS = ("asr", "compute", "torch", "batching", "service")
WHISPERX_VAD_STEP_S = 1.0  # WhisperX slides pyannote's 5 s windows by 1 s (this project's default: 2.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="default: random-large-v3-turbo on a GPU, bundled on a CPU")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--files", type=int, default=None, help="default: 8 on a GPU, 4 on a CPU")
    parser.add_argument("--minutes", type=float, default=None, help="per file; default: 4 on a GPU, 1 on a CPU")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--tokens", type=int, default=100, help="decoded per chunk by a random-weight model")
    parser.add_argument("--clients", type=int, nargs="+", default=[8])
    parser.add_argument("--deadline-s", type=float, default=None, help="skip the rows left after this (default: none)")
    parser.add_argument("--out", type=Path, default=Path("bench_gpu.md"))
    args = parser.parse_args()

    _ensure_cublas12()
    import torch

    from pipeline.placement import resolve_auto

    # torch's device and CTranslate2's are found apart: a CTranslate2 that cannot use the GPU
    # loses the ASR rows (said in them), not the torch stages' GPU rows.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    asr_device = resolve_auto("auto").device if device == "cuda" else "cpu"  # where CTranslate2 sees a GPU
    args.model = args.model or ("random-large-v3-turbo" if device == "cuda" else "bundled")
    args.files = args.files or (8 if device == "cuda" else 4)
    args.minutes = args.minutes or (4.0 if device == "cuda" else 1.0)
    args.batch_sizes = args.batch_sizes or ([16, 32, 64, 128] if device == "cuda" else [4, 16])
    work = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    bench = Bench(args, device, asr_device, work)
    bench.emit(bench.header())
    if device == "cuda" and asr_device == "cpu":
        bench.asr_unavailable = "CTranslate2 sees no GPU here (torch does)"
    else:
        try:
            bench.model_dir, bench.random_weights = _model(args.model, work)
        except Exception as exc:  # noqa: BLE001 - the torch stages are still measured
            bench.asr_unavailable = f"the ASR model could not be built: {type(exc).__name__}: {str(exc)[:300]}"
    for section in args.sections:
        started = time.perf_counter()
        try:
            getattr(bench, section)()
        except Exception as exc:  # noqa: BLE001 - a section that cannot run says why; the rest run
            bench.emit(f"\n{section}: not measured: {type(exc).__name__}: {str(exc)[:300]}")
        bench.emit(f"\n_{section}: {time.perf_counter() - started:.0f} s of wall time_\n")


class Bench:
    """Each row is printed and appended to --out as soon as it is measured."""

    def __init__(self, args, device: str, asr_device: str, work: Path):
        self.args, self.device, self.asr_device = args, device, asr_device
        self.model_dir: Path | None = None
        self.random_weights = False
        self.asr_unavailable: str | None = None
        self.paths = _corpus(work, args.files, args.minutes)
        self.audio_seconds = args.files * args.minutes * 60
        self.compute_type = "float16" if asr_device == "cuda" else "int8"
        self.started = time.monotonic()
        self._chunks = None

    def emit(self, text: str) -> None:
        print(text, flush=True)
        with self.args.out.open("a") as out:
            out.write(text + "\n")

    def header(self) -> str:
        import ctranslate2
        import torch

        card = torch.cuda.get_device_name(0) if self.device == "cuda" else _cpu_name()
        shim = os.environ.get("WXS_CUBLAS_SHIM")
        return (
            f"## bench_gpu: {card}\n\n"
            f"{time.strftime('%Y-%m-%d')}; `{' '.join(sys.argv)}`; torch on {self.device}, CTranslate2 on "
            f"{self.asr_device}; {os.cpu_count()} CPUs; torch {torch.__version__}, ctranslate2 "
            f"{ctranslate2.__version__}; model {self.args.model} (a random-weight model decodes "
            f"{self.args.tokens} tokens per chunk); audio {self.args.files} files x {self.args.minutes:g} min "
            f"(pyannote sample.wav tiled) = {self.audio_seconds / 60:.0f} min. Both sides decode text only "
            f"(no word times; plain WhisperX has none) with the VAD sliding 1 s as WhisperX's does."
            + (f" CTranslate2 ran on {shim} as libcublas.so.12." if shim else "")
            + "\n"
        )

    def _late(self) -> bool:
        deadline = self.args.deadline_s
        return deadline is not None and time.monotonic() - self.started > deadline

    def _rows(self, title: str, rows) -> None:
        """rows: (label, measure) pairs; each measured, failed or skipped on its own."""
        self.emit(f"### {title}\n\n| run | wall s | x real time |\n|---|---|---|")
        if self.asr_unavailable:
            self.emit(f"| not measured: {self.asr_unavailable} | | |")
            return
        for label, measure in rows:
            if self._late():
                self.emit(f"| {label} | skipped: past --deadline-s | |")
                continue
            try:
                wall = measure()
            except Exception as exc:  # noqa: BLE001 - one failing row is a result too
                self.emit(f"| {label} | failed: {type(exc).__name__}: {str(exc)[:150]} | |")
                continue
            self.emit(f"| {label} | {wall:.1f} | {self.audio_seconds / wall:.0f} |")

    # --- ASR -------------------------------------------------------------------------------

    def asr(self) -> None:
        sizes = self.args.batch_sizes
        rows = [
            (f"plain WhisperX, one file at a time, batch {b}", lambda b=b: self._plain_whisperx(b))
            for b in sorted({16, max(sizes)})
        ]
        rows += [
            (f"this pipeline (VAD + ASR, files batched together), batch {b}", lambda b=b: self._pipeline(b))
            for b in sizes
        ]
        rows += [
            (f"ASR alone (the same chunks, cut once), batch {b}", lambda b=b: self._asr_alone(b, None)) for b in sizes
        ]
        self._rows(f"asr: ASR, {self.compute_type}", rows)

    def compute(self) -> None:
        types = ("float16", "int8_float16") if self.asr_device == "cuda" else ("int8", "float32")
        batch = max(self.args.batch_sizes)
        rows = [(f"ASR alone, {t}, batch {batch}", lambda t=t: self._asr_alone(batch, t)) for t in types]
        self._rows("compute: compute types", rows)

    def _transcriber(self, compute_type: str, batch: int):
        from pipeline.asr import AsrConfig, Transcriber

        config = AsrConfig(model=str(self.model_dir), compute_type=compute_type, batch_size=batch)
        transcriber = Transcriber(config, self._placement(self.asr_device))
        self._fix_length(transcriber._model)
        return transcriber

    def _fix_length(self, whisper_model) -> None:
        """A random-weight model decodes exactly --tokens per chunk (faster-whisper's model object)."""
        if self.random_weights:
            from benchmarks.random_whisper import FixedLength

            eot = whisper_model.hf_tokenizer.token_to_id("<|endoftext|>")
            whisper_model.model = FixedLength(whisper_model.model, eot, self.args.tokens)

    def _placement(self, device: str):
        from pipeline.placement import resolve_auto

        return resolve_auto(device)  # the CLI's placement: every core, and GPU 0 whole

    def _plain_whisperx(self, batch: int) -> float:
        import whisperx

        from pipeline.audio import load_audio

        model = whisperx.load_model(
            str(self.model_dir),
            self.asr_device,
            compute_type=self.compute_type,
            language="en",
            vad_method="pyannote",
            threads=0 if self.asr_device == "cuda" else os.cpu_count(),
        )
        self._fix_length(model.model)
        # The same float32 samples whisperx.load_audio gives for these 16 kHz WAVs, read
        # without ffmpeg (which the GPU machine may lack).
        model.transcribe(load_audio(self.paths[0]).samples, batch_size=batch)  # warm-up
        start = time.perf_counter()
        for path in self.paths:
            model.transcribe(load_audio(path).samples, batch_size=batch)
        wall = time.perf_counter() - start
        del model
        _free_gpu()
        return wall

    def _pipeline(self, batch: int) -> float:
        from dataclasses import replace

        from pipeline.asr import AsrConfig
        from pipeline.config import PipelineConfig
        from pipeline.plan import Request
        from pipeline.runner import LocalPipeline
        from pipeline.vad import VadOptions

        config = PipelineConfig(
            asr=AsrConfig(model=str(self.model_dir), compute_type=self.compute_type, batch_size=batch),
            vad=replace(VadOptions(), step_seconds=WHISPERX_VAD_STEP_S),
        )
        pipe = LocalPipeline(config, self._placement(self.asr_device))
        self._fix_length(pipe.transcriber._model)
        request = Request(language="en", response_format="json")  # text: no word timing, as WhisperX
        pipe.transcribe(self.paths[0], request)  # warm-up
        start = time.perf_counter()
        results = list(pipe.transcribe_many(self.paths, request))
        wall = time.perf_counter() - start
        failed = [r.error for r in results if r.error is not None]
        assert not failed, failed[:3]
        del pipe
        _free_gpu()
        return wall

    def chunks(self):
        """Every file's VAD chunks, cut once (the ASR-alone runs share them)."""
        if self._chunks is None:
            from pipeline.audio import load_audio
            from pipeline.vad import SpeechDetector, VadOptions

            vad = SpeechDetector(VadOptions(step_seconds=WHISPERX_VAD_STEP_S), self._placement(self.device))
            self._chunks = [c for i, p in enumerate(self.paths) for c in vad.chunks(load_audio(p), str(i))]
        return self._chunks

    def _asr_alone(self, batch: int, compute_type: str | None) -> float:
        from pipeline.asr import DecodeOptions

        chunks = self.chunks()
        transcriber = self._transcriber(compute_type or self.compute_type, batch)
        options = DecodeOptions(language="en", word_timestamps=False)
        transcriber.transcribe_chunks(chunks[:batch], options)  # warm-up
        start = time.perf_counter()
        step = batch * transcriber.num_workers
        for i in range(0, len(chunks), step):
            transcriber.transcribe_chunks(chunks[i : i + step], options)
        wall = time.perf_counter() - start
        del transcriber
        _free_gpu()
        return wall

    # --- torch stages ----------------------------------------------------------------------

    def torch(self) -> None:
        from pipeline.audio import load_audio
        from pipeline.torch_runtime import TorchRuntime

        audio = load_audio(self.paths[0])
        variants = [TorchRuntime(), TorchRuntime(compile=True)]
        if self.device == "cuda":
            variants += [TorchRuntime("float16"), TorchRuntime("bfloat16"), TorchRuntime("float16", compile=True)]
        self.emit(
            f"### torch: torch stages on {self.device}, one file of {audio.duration:.0f} s\n\n"
            "| stage | dtype | compiled | load s | first call s | run s | x real time | max difference from "
            "float32 eager |\n|---|---|---|---|---|---|---|---|"
        )
        stages = (("VAD scores", self._vad), ("speaker encoder (forward only)", self._encoder))
        stages += (("wav2vec2-base logits", self._wav2vec2),)
        for stage, run in stages:
            reference = None
            for runtime in variants:
                row = f"| {stage} | {runtime.dtype} | {runtime.compile} |"
                if self._late():
                    self.emit(f"{row} skipped: past --deadline-s | | | | |")
                    continue
                try:
                    load, first, wall, output = run(audio, runtime)
                except Exception as exc:  # noqa: BLE001 - one variant failing is a result too
                    self.emit(f"{row} failed: {type(exc).__name__}: {str(exc)[:120]} | | | | |")
                    continue
                if runtime == TorchRuntime():
                    reference = output
                difference = "n/a" if reference is None else f"{float(abs(output - reference).max()):.2e}"
                self.emit(f"{row} {load:.1f} | {first:.2f} | {wall:.2f} | {audio.duration / wall:.0f} | {difference} |")

    def _timed(self, load, run):
        """(load s, first call s: compiles what load did not, run s, output)."""
        started = time.perf_counter()
        loaded = load()
        _sync()
        loaded_s = time.perf_counter() - started
        started = time.perf_counter()
        run(loaded)
        _sync()
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        output = run(loaded)
        _sync()
        return loaded_s, first_s, time.perf_counter() - started, output

    def _vad(self, audio, runtime):
        import numpy as np
        import torch

        from pipeline.schema import SAMPLE_RATE
        from pipeline.vad import SpeechDetector, VadOptions

        waveform = {"waveform": torch.from_numpy(audio.samples)[None], "sample_rate": SAMPLE_RATE}
        options = VadOptions(step_seconds=WHISPERX_VAD_STEP_S, runtime=runtime)
        return self._timed(
            lambda: SpeechDetector(options, self._placement(self.device)),
            lambda vad: np.asarray(vad._inference(waveform).data),
        )

    def _encoder(self, audio, runtime):
        """The encoder's forward pass over 1.6 s windows every 0.2 s (the mel spectrogram,
        computed by librosa on the CPU either way, is made once outside the timing)."""
        import numpy as np
        import torch
        from resemblyzer.audio import wav_to_mel_spectrogram

        from pipeline.diarize import WINDOW_FRAMES, DiarizeConfig, Diarizer

        mel = wav_to_mel_spectrogram(audio.samples)
        windows = np.stack([mel[i : i + WINDOW_FRAMES] for i in range(0, len(mel) - WINDOW_FRAMES, 20)])

        def run(diarizer):
            encoder = diarizer._backend.encoder
            with torch.inference_mode():
                parts = [torch.from_numpy(windows[i : i + 256]).to(encoder.device) for i in range(0, len(windows), 256)]
                return torch.cat([encoder(part).float().cpu() for part in parts]).numpy()

        return self._timed(lambda: Diarizer(DiarizeConfig(runtime=runtime), self._placement(self.device)), run)

    def _wav2vec2(self, audio, runtime):
        """A wav2vec2-base-sized CTC model (random weights, as whisperx's English aligner is
        base-sized) over the file in 30 s pieces: emissions, the aligner's forward pass."""
        import torch
        from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

        placement = self._placement(self.device)

        def load():
            torch.manual_seed(0)
            model = Wav2Vec2ForCTC(Wav2Vec2Config(vocab_size=32)).eval().to(placement.torch_device)
            return runtime.prepare(model, placement, "align")

        pieces = [audio.samples[i : i + 30 * 16000] for i in range(0, len(audio.samples), 30 * 16000)]

        def run(model):
            with torch.inference_mode():
                inputs = [torch.from_numpy(p)[None].to(placement.torch_device) for p in pieces]
                return torch.cat([model(x).logits[0].float().cpu() for x in inputs]).numpy()

        return self._timed(load, run)

    # --- cross-request batching of the torch stages ----------------------------------------

    def batching(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from pipeline.audio import load_audio
        from pipeline.batching import BatchStats
        from pipeline.diarize import DiarizeConfig, Diarizer
        from pipeline.schema import SAMPLE_RATE, Audio
        from pipeline.vad import SpeechDetector, VadOptions

        # Short requests are where batching across requests matters: a 30 s request has 26 VAD
        # windows at a 1 s step, under one forward's 32, and a few hundred encoder windows.
        requests = 32 if self.device == "cuda" else 8
        whole = [load_audio(p).samples for p in self.paths]
        audios = [
            Audio(whole[i % len(whole)][(i // len(whole)) * SAMPLE_RATE :][: 30 * SAMPLE_RATE]) for i in range(requests)
        ]
        seconds = sum(a.duration for a in audios)
        placement = self._placement(self.device)
        vad = SpeechDetector(VadOptions(step_seconds=WHISPERX_VAD_STEP_S), placement)
        diarizer = Diarizer(DiarizeConfig(), placement)
        speech = [vad.analyze(a).speech for a in audios]  # also warms both up
        diarizer.diarize(audios[0], speech[0])
        stages = (
            ("VAD scores + regions", vad.batcher, lambda job: vad.analyze(job[0])),
            ("offline diarization (encoder batched)", diarizer._backend.batcher, lambda job: diarizer.diarize(*job)),
        )
        self.emit(
            f"### batching: torch stages across requests on {self.device}, {requests} requests of 30 s\n\n"
            "| stage | calls at once | wall s | x real time | forwards | rows per forward |\n|---|---|---|---|---|---|"
        )
        for stage, batcher, run in stages:
            for calls in (1, 4, 16):
                if self._late():
                    self.emit(f"| {stage} | {calls} | skipped: past --deadline-s | | | |")
                    continue
                batcher.stats = BatchStats()
                started = time.perf_counter()
                with ThreadPoolExecutor(calls) as pool:
                    list(pool.map(run, zip(audios, speech)))
                _sync()
                wall = time.perf_counter() - started
                stats = batcher.stats
                self.emit(
                    f"| {stage} | {calls} | {wall:.2f} | {seconds / wall:.0f} | {stats.forwards} | "
                    f"{stats.rows / max(1, stats.forwards):.0f} |"
                )
        if not self._late():
            wall = _alignment_cpu_side(audios)
            self.emit(
                f"| alignment's CPU side (whisperx CTC trellis, backtrack, words; 150 words/min, a "
                f"negligible model) | 1 | {wall:.2f} | {seconds / wall:.0f} | | |"
            )

    # --- service ---------------------------------------------------------------------------

    def service(self) -> None:
        title = "### service: the Serve graph, native endpoint, every file once by N clients"
        if self.asr_unavailable or self.random_weights:
            why = self.asr_unavailable or "random weights do not stop decoding where speech ends"
            self.emit(f"{title}\n\nnot measured: {why}")
            return
        import statistics
        from concurrent.futures import ThreadPoolExecutor

        import httpx

        from benchmarks import launcher

        profile = "gpu" if self.asr_device == "cuda" else "cpu"
        args = {
            "profile": profile,
            "asr_model": str(self.model_dir),
            "align_model": "none",
            "diarize_model": "none",
            "max_queue_wait_s": 3600,
            "cache": {"enabled": False},  # the corpus repeats; every request must reach the models
        }
        base = launcher.start(args, port=18401)
        self.emit(
            f"{title} ({profile} profile)\n\n| clients | wall s | x real time | median request s |\n|---|---|---|---|"
        )

        def post(path: Path) -> float:
            started = time.perf_counter()
            response = httpx.post(f"{base}/v1/transcribe?language=en", content=path.read_bytes(), timeout=3600)
            assert response.raise_for_status().json()["segments"] is not None
            return time.perf_counter() - started

        try:
            post(self.paths[0])
            for clients in self.args.clients:
                if self._late():
                    self.emit(f"| {clients} | skipped: past --deadline-s | | |")
                    continue
                started = time.perf_counter()
                with ThreadPoolExecutor(max_workers=clients) as pool:
                    latencies = list(pool.map(post, self.paths))
                wall = time.perf_counter() - started
                median = statistics.median(latencies)
                self.emit(f"| {clients} | {wall:.1f} | {self.audio_seconds / wall:.0f} | {median:.1f} |")
        finally:
            launcher.stop()


def _alignment_cpu_side(audios) -> float:
    """Seconds whisperx.align spends on what runs on the CPU whatever the device: the CTC
    trellis and backtrack (Python loops over frames) and the word assembly. The model is a
    2-layer, 32-wide wav2vec2 with random weights, so its forward costs next to nothing; the
    text is 150 words a minute, a brisk speaking rate."""
    import string

    import whisperx

    from benchmarks.tiny_models import tiny_wav2vec2_ctc
    from pipeline.punkt import ensure_punkt

    ensure_punkt()  # whisperx splits sentences with NLTK's punkt (bundled here, no download)
    vocab = {c: i for i, c in enumerate(["<pad>", "|", *string.ascii_lowercase, "'"])}
    model = tiny_wav2vec2_ctc(len(vocab)).eval()
    metadata = {"language": "en", "dictionary": vocab, "type": "huggingface"}
    words = "the quick brown fox jumps over a lazy dog while seven people watch it".split()
    started = time.perf_counter()
    for audio in audios:
        text = " ".join(words[i % len(words)] for i in range(int(audio.duration * 150 / 60)))
        segments = [{"start": 0.0, "end": audio.duration, "text": text}]
        whisperx.align(segments, model, metadata, audio.samples, "cpu", return_char_alignments=False)
    return time.perf_counter() - started


def _model(name: str, work: Path) -> tuple[Path, bool]:
    if name.startswith("random-"):
        from benchmarks.random_whisper import build

        return build(name.removeprefix("random-"), work), True
    from pipeline.models import resolve_asr_model

    return resolve_asr_model(name).path, False


def _corpus(work: Path, files: int, minutes: float) -> list[Path]:
    """pyannote's 30 s two-speaker sample (16 kHz mono PCM) tiled to `minutes`, as WAV files
    (read and written with the standard library: the GPU machine may lack ffmpeg)."""
    import wave

    import numpy as np
    import pyannote.audio

    with wave.open(str(Path(pyannote.audio.__file__).parent / "sample" / "sample.wav")) as source:
        assert (source.getframerate(), source.getnchannels(), source.getsampwidth()) == (16000, 1, 2)
        sample = np.frombuffer(source.readframes(source.getnframes()), dtype=np.int16)
    length = int(minutes * 60 * 16000)
    tiled = np.tile(sample, -(-length // len(sample)))[:length]
    paths = []
    for i in range(files):
        path = work / f"file{i:02d}.wav"
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(16000)
            out.writeframes(np.roll(tiled, i * 16000).tobytes())
        paths.append(path)
    return paths


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "CPU"


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _free_gpu() -> None:
    import gc

    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _ensure_cublas12() -> None:
    """CTranslate2's wheel opens libcublas.so.12 (CUDA 12); a CUDA 13 machine has only
    libcublas.so.13, whose nine functions CTranslate2 calls keep their signatures. Without a
    .so.12, point one at the .so.13 and restart this process with it on the library path
    (the loader reads LD_LIBRARY_PATH once, at start). Said in the header when used."""
    import ctypes
    import glob

    try:
        ctypes.CDLL("libcublas.so.12")
        return
    except OSError:
        pass
    if os.environ.get("WXS_CUBLAS_SHIM"):
        return  # restarted once already: CTranslate2's first GPU matrix product will say what is wrong
    roots = [p for p in sys.path if p.endswith("-packages")] + [f"{sys.prefix}/lib"]
    found = sorted({hit for root in roots for hit in glob.glob(f"{root}/nvidia/**/libcublas.so.13", recursive=True)})
    found += sorted(glob.glob("/usr/local/cuda*/lib64/libcublas.so.13"))
    if not found:
        return
    shim = Path(tempfile.mkdtemp(prefix="cublas12_"))
    for name in ("libcublas", "libcublasLt"):
        target = Path(found[0]).parent / f"{name}.so.13"
        if target.exists():
            (shim / f"{name}.so.12").symlink_to(target)
    env = dict(os.environ, WXS_CUBLAS_SHIM=str(found[0]))
    env["LD_LIBRARY_PATH"] = f"{shim}:{Path(found[0]).parent}:{env.get('LD_LIBRARY_PATH', '')}"
    print(f"libcublas.so.12 not found: using {found[0]} through {shim}", flush=True)
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks.bench_gpu", *sys.argv[1:]], env)


if __name__ == "__main__":
    main()
