"""Question: how fast is each stage on one accelerator, and which of the seed's optimisations pay?

One self-contained command that fits one `device` call; prints markdown tables as each
section ends and appends them to --out (so a run cut short still leaves what it measured).

    .venv/bin/python -m benchmarks.bench_gpu                  # here: CPU, bundled tiny.en
    python3 -m benchmarks.bench_gpu --out $OUT/bench_gpu.md   # on a GPU: random large-v3-turbo

On a GPU with no weights (the device machine has no internet) the ASR model is a
large-v3-turbo with random weights whose every chunk decodes exactly --tokens tokens
(benchmarks/random_whisper.py): an honest speed, no WER. On the CPU it is the real bundled
model on real speech. The audio is pyannote-audio's sample.wav (shipped in its wheel) tiled
into --files files of --minutes minutes.

Sections (--sections):
  asr      plain WhisperX (load_model + transcribe, one file at a time, its batch_size 16)
           vs this project's pipeline (VAD per file, chunks of consecutive files batched
           together: the service's cross-request seam) at several batch sizes, then ASR alone
           (chunks ready) at those batch sizes: the engine's ceiling
  compute  ASR alone per compute type (GPU: float16, int8_float16; CPU: int8, float32)
  torch    VAD segmentation, speaker encoder and a wav2vec2-base-sized aligner: eager vs
           torch.compile, and float16 / bfloat16 on a GPU; each with its output difference
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

SECTIONS = ("asr", "compute", "torch", "service")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="default: random-large-v3-turbo on a GPU, bundled on a CPU")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--files", type=int, default=None, help="default: 12 on a GPU, 4 on a CPU")
    parser.add_argument("--minutes", type=float, default=None, help="per file; default: 4 on a GPU, 1 on a CPU")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--tokens", type=int, default=100, help="decoded per chunk by a random-weight model")
    parser.add_argument("--clients", type=int, nargs="+", default=[8])
    parser.add_argument("--out", type=Path, default=Path("bench_gpu.md"))
    args = parser.parse_args()

    _ensure_cublas12()
    import torch

    gpu = torch.cuda.is_available() and _ctranslate2_sees_gpu()
    device = "cuda" if gpu else "cpu"
    args.model = args.model or ("random-large-v3-turbo" if gpu else "bundled")
    args.files = args.files or (12 if gpu else 4)
    args.minutes = args.minutes or (4.0 if gpu else 1.0)
    args.batch_sizes = args.batch_sizes or ([16, 32, 64, 128] if gpu else [4, 16])
    work = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    model_dir, random_weights = _model(args.model, work)
    bench = Bench(args, device, model_dir, random_weights, work)
    bench.emit(bench.header())
    for section in args.sections:
        started = time.perf_counter()
        try:
            table = getattr(bench, section)()
        except Exception as exc:  # a section that cannot run here says why; the rest still run
            table = f"### {section}\n\nnot measured: {type(exc).__name__}: {str(exc)[:300]}\n"
        bench.emit(f"{table}\n_{section}: {time.perf_counter() - started:.0f} s of wall time_\n")


class Bench:
    def __init__(self, args, device: str, model_dir: Path, random_weights: bool, work: Path):
        self.args, self.device, self.model_dir, self.random_weights = args, device, model_dir, random_weights
        self.paths = _corpus(work, args.files, args.minutes)
        self.audio_seconds = args.files * args.minutes * 60
        self.compute_type = "float16" if device == "cuda" else "int8"
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
        weights = (
            f"random weights, {self.args.tokens} tokens decoded per chunk" if self.random_weights else "real weights"
        )
        return (
            f"## bench_gpu: {card}\n\n"
            f"{time.strftime('%Y-%m-%d')}; `{' '.join(sys.argv)}`; device {self.device}, {os.cpu_count()} CPUs; "
            f"torch {torch.__version__}, ctranslate2 {ctranslate2.__version__}; model {self.args.model} "
            f"({weights}); audio {self.args.files} files x {self.args.minutes:g} min "
            f"(pyannote sample.wav tiled) = {self.audio_seconds / 60:.0f} min."
            + (f" CTranslate2 ran on {os.environ['WXS_CUBLAS_SHIM']} as libcublas.so.12." if shim else "")
            + "\n"
        )

    # --- ASR -------------------------------------------------------------------------------

    def asr(self) -> str:
        rows = [("plain WhisperX, one file at a time, batch 16", self._plain_whisperx(16))]
        for batch in self.args.batch_sizes:
            rows.append((f"this pipeline (VAD + ASR, files batched together), batch {batch}", self._pipeline(batch)))
        for batch in self.args.batch_sizes:
            rows.append((f"ASR alone, chunks ready, batch {batch}", self._asr_alone(batch, self.compute_type)))
        return self._table("asr", f"ASR, {self.compute_type}", rows)

    def compute(self) -> str:
        types = ("float16", "int8_float16") if self.device == "cuda" else ("int8", "float32")
        batch = max(self.args.batch_sizes)
        rows = [(f"ASR alone, {t}, batch {batch}", self._asr_alone(batch, t)) for t in types]
        return self._table("compute", "compute types", rows)

    def _table(self, name: str, title: str, rows) -> str:
        lines = [f"### {name}: {title}\n", "| run | wall s | x real time |", "|---|---|---|"]
        lines += [f"| {label} | {wall:.1f} | {self.audio_seconds / wall:.0f} |" for label, wall in rows]
        return "\n".join(lines) + "\n"

    def _transcriber(self, compute_type: str, batch: int):
        from pipeline.asr import AsrConfig, Transcriber

        transcriber = Transcriber(
            AsrConfig(model=str(self.model_dir), compute_type=compute_type, batch_size=batch), self._placement()
        )
        self._fix_length(transcriber._model)
        return transcriber

    def _fix_length(self, whisper_model) -> None:
        """A random-weight model decodes exactly --tokens per chunk (faster-whisper's model object)."""
        if self.random_weights:
            from benchmarks.random_whisper import FixedLength

            eot = whisper_model.hf_tokenizer.token_to_id("<|endoftext|>")
            whisper_model.model = FixedLength(whisper_model.model, eot, self.args.tokens)

    def _placement(self):
        from pipeline.placement import Placement, available_cores

        if self.device == "cuda":
            return Placement("cuda", available_cores(), 1.0, 0)
        return Placement.local_cpu()

    def _plain_whisperx(self, batch: int) -> float:
        import whisperx

        from pipeline.audio import load_audio

        model = whisperx.load_model(
            str(self.model_dir),
            self.device,
            compute_type=self.compute_type,
            language="en",
            vad_method="pyannote",
            threads=0 if self.device == "cuda" else os.cpu_count(),
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
        from pipeline.asr import AsrConfig
        from pipeline.config import PipelineConfig
        from pipeline.plan import Request
        from pipeline.runner import LocalPipeline

        config = PipelineConfig(asr=AsrConfig(model=str(self.model_dir), compute_type=self.compute_type))
        pipe = LocalPipeline(replace_asr_batch(config, batch), self._placement())
        self._fix_length(pipe.transcriber._model)
        request = Request(language="en")
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
            from pipeline.vad import SpeechDetector

            vad = SpeechDetector(placement=self._placement())
            self._chunks = [c for i, p in enumerate(self.paths) for c in vad.chunks(load_audio(p), str(i))]
        return self._chunks

    def _asr_alone(self, batch: int, compute_type: str) -> float:
        from pipeline.asr import DecodeOptions

        chunks = self.chunks()
        transcriber = self._transcriber(compute_type, batch)
        options = DecodeOptions(language="en")
        transcriber.transcribe_chunks(chunks[:batch], options)  # warm-up
        start = time.perf_counter()
        for i in range(0, len(chunks), batch * transcriber.num_workers):
            transcriber.transcribe_chunks(chunks[i : i + batch * transcriber.num_workers], options)
        wall = time.perf_counter() - start
        del transcriber
        _free_gpu()
        return wall

    # --- torch stages ----------------------------------------------------------------------

    def torch(self) -> str:
        from pipeline.audio import load_audio
        from pipeline.torch_runtime import TorchRuntime

        audio = load_audio(self.paths[0])
        variants = [TorchRuntime(), TorchRuntime(compile=True)]
        if self.device == "cuda":
            variants += [TorchRuntime("float16"), TorchRuntime("bfloat16"), TorchRuntime("float16", compile=True)]
        lines = [
            "### torch: torch stages, one file of audio",
            "",
            "| stage | dtype | compiled | load s | run s | x real time | max difference from float32 eager |",
            "|---|---|---|---|---|---|---|",
        ]
        for stage, run in (("VAD", self._vad), ("speaker encoder", self._encoder), ("wav2vec2-base", self._wav2vec2)):
            reference = None
            for runtime in variants:
                try:
                    load, wall, output = run(audio, runtime)
                except Exception as exc:  # noqa: BLE001 - one variant failing is a result too
                    lines.append(f"| {stage} | {runtime.dtype} | {runtime.compile} | failed: {str(exc)[:120]} | | | |")
                    continue
                reference = output if reference is None else reference
                difference = float(abs(output - reference).max())
                lines.append(
                    f"| {stage} | {runtime.dtype} | {runtime.compile} | {load:.1f} | {wall:.2f} | "
                    f"{audio.duration / wall:.0f} | {difference:.2e} |"
                )
        return "\n".join(lines) + "\n"

    def _timed(self, load, run):
        started = time.perf_counter()
        loaded = load()
        loaded_s = time.perf_counter() - started
        run(loaded)  # warm-up (compiles, if it has not at load)
        _sync()
        started = time.perf_counter()
        output = run(loaded)
        _sync()
        return loaded_s, time.perf_counter() - started, output

    def _vad(self, audio, runtime):
        import numpy as np

        from pipeline.schema import SAMPLE_RATE
        from pipeline.vad import SpeechDetector, VadOptions

        def scores(vad):
            waveform = {"waveform": __import__("torch").from_numpy(audio.samples)[None], "sample_rate": SAMPLE_RATE}
            return np.asarray(vad._inference(waveform).data)

        return self._timed(lambda: SpeechDetector(VadOptions(runtime=runtime), self._placement()), scores)

    def _encoder(self, audio, runtime):
        import numpy as np

        from pipeline.diarize import DiarizeConfig, Diarizer

        windows = [(s, s + 1.6, s, s + 1.6) for s in np.arange(0.0, audio.duration - 1.6, 0.2)]
        return self._timed(
            lambda: Diarizer(DiarizeConfig(runtime=runtime), self._placement()),
            lambda d: d._backend._embed(audio, windows),
        )

    def _wav2vec2(self, audio, runtime):
        """A wav2vec2-base-sized CTC model (random weights, as whisperx's English aligner is
        base-sized) over the file in 30 s pieces: emissions, the aligner's forward pass."""
        import torch
        from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

        placement = self._placement()

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

    # --- service ---------------------------------------------------------------------------

    def service(self) -> str:
        if self.random_weights:
            return "### service\n\nnot measured: random weights do not stop decoding where speech ends\n"
        import statistics
        from concurrent.futures import ThreadPoolExecutor

        import httpx

        from serve import launcher

        profile = "gpu" if self.device == "cuda" else "cpu"
        args = {"profile": profile, "asr_model": str(self.model_dir), "align_model": "none", "max_queue_wait_s": 3600}
        base = launcher.start(args, port=18401)
        lines = [
            f"### service: the Serve graph, {profile} profile, native endpoint",
            "",
            "| clients | wall s | x real time | median request s |",
            "|---|---|---|---|",
        ]

        def post(path: Path) -> float:
            started = time.perf_counter()
            response = httpx.post(
                f"{base}/v1/transcribe?language=en", content=path.read_bytes(), timeout=3600
            ).raise_for_status()
            assert response.json()["segments"] is not None
            return time.perf_counter() - started

        try:
            post(self.paths[0])
            for clients in self.args.clients:
                started = time.perf_counter()
                with ThreadPoolExecutor(max_workers=clients) as pool:
                    latencies = list(pool.map(post, self.paths))
                wall = time.perf_counter() - started
                lines.append(
                    f"| {clients} | {wall:.1f} | {self.audio_seconds / wall:.0f} | {statistics.median(latencies):.1f} |"
                )
        finally:
            launcher.stop()
        return "\n".join(lines) + "\n"


def replace_asr_batch(config, batch: int):
    from dataclasses import replace

    return replace(config, asr=replace(config.asr, batch_size=batch))


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


def _ctranslate2_sees_gpu() -> bool:
    import ctranslate2

    return ctranslate2.get_cuda_device_count() > 0


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
        return  # already restarted once: CTranslate2 will report the GPU as unusable
    found = sorted(glob.glob(f"{sys.prefix}/lib/python3*/site-packages/nvidia/**/libcublas.so.13", recursive=True))
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
