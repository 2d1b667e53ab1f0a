"""Ray Data batch transcription: a folder, glob or manifest of audio -> Parquet under OUTPUT.

    whisperx-serve batch INPUT OUTPUT [options]
    ray job submit --working-dir . -- python -m cluster.batch INPUT OUTPUT [options]

read_binary_files (with paths) -> content hash -> skip what OUTPUT already holds -> decode +
VAD (actors) -> ASR, chunks batched across files, + alignment (actor pool; GPUs go here) ->
diarization (actors, optional) -> Parquet parts written atomically. A rerun with the same
OUTPUT skips every file already written under the same key (content hash + options), so a
killed job resumes without losing or redoing work; a file that fails is written as an error
row and the rest go on.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import asdict, dataclass, fields, replace

from cluster.output_parts import deduplicate, done_keys
from cluster.restartable import pass_actor_arguments_by_value
from cluster.stages import BatchJob, Diarize, ParquetSink, Preprocess, Transcribe, hash_row, new_run_id
from pipeline.asr import AsrConfig
from pipeline.config import PipelineConfig
from pipeline.plan import Request

log = logging.getLogger("whisperx_serve.batch")


MAX_READ_BLOCKS = 2000  # past this, several files share a read block (and a write)
PREPROCESS_BATCH = 4  # files a decode + VAD actor takes at once


@dataclass(frozen=True)
class RunOptions:
    """How many actors and what they hold: not part of any file's key."""

    asr_actors: int = 1
    preprocess_actors: int = 1  # decode + VAD actors (CPU)
    asr_num_gpus: float = 0.0
    asr_num_cpus: float = 1.25  # its threads follow the reservation (1.25 -> 2)
    diarize_num_gpus: float = 0.0
    files_per_batch: int = 8
    max_files: int | None = None  # process at most this many new files, then stop
    retry_failed: bool = False  # redo files whose earlier row is an error
    progress: bool = True
    stats: bool = False  # log Ray Data's per-operator timings at the end


@dataclass
class Summary:
    run_id: str
    files_listed: int = 0
    files_skipped: int | None = 0  # already in OUTPUT (None: not counted, --max-files)
    files_done: int = 0
    failures: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def throughput(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0

    def __str__(self) -> str:
        skipped = "some" if self.files_skipped is None else self.files_skipped
        return (
            f"run {self.run_id}: {self.files_done} files transcribed ({self.failures} failed), "
            f"{skipped} already done of {self.files_listed} listed; "
            f"{self.audio_seconds / 3600:.3f} h of audio in {self.wall_seconds:.1f} s = "
            f"{self.throughput:.1f}x real time"
        )


def plan_job(config: PipelineConfig, request: Request, run: RunOptions, per_segment: bool = False) -> BatchJob:
    """The job's plan, made once here. The ASR model's card is read where the ASR actors run
    (that node has the model's files; this driver may not)."""
    import ray

    from pipeline.plan import Planner

    where = {
        "vad": "the preprocess actors run on CPUs",
        "align": "the ASR actors reserve none (--num-gpus), or only logical ones (WXS_LOGICAL_GPUS)",
        "diarize": "the diarize actor reserves none (--diarize-gpus), or only logical ones (WXS_LOGICAL_GPUS)",
    }

    def check(asr_device: str, logical: bool) -> None:  # alignment runs in the ASR actors
        diarize_device = "cuda" if run.diarize_num_gpus > 0 and not logical else "cpu"
        config.check_torch_devices({"vad": "cpu", "align": asr_device, "diarize": diarize_device}, where)

    # First from the reservations as declared: a job that cannot run is refused before it
    # waits for GPUs the cluster may not have.
    check("cuda" if run.asr_num_gpus > 0 else "cpu", logical=False)
    # Then under the ASR actors' reservation: the card, and the device that reservation gives
    # (the CPU where the cluster's GPUs are logical only, WXS_LOGICAL_GPUS).
    describe = ray.remote(_describe_asr).options(num_cpus=run.asr_num_cpus, num_gpus=run.asr_num_gpus)
    cards, device, logical = _get_once_scheduled(describe.remote(config.asr), run)
    check(device, logical)
    # The ASR actors run the cards' compute type (resolved for their device): part of the key.
    config = replace(config, asr=replace(config.asr, compute_type=cards[0].compute_type))
    plan = Planner(config, cards).plan(request)
    plan.speaker_references()  # a bad reference clip fails the job here, not in its actors
    return BatchJob(plan=plan, per_segment=per_segment)


def _get_once_scheduled(ref, run: RunOptions, every_s: float = 20.0):
    """ray.get of the task that reserves what an ASR actor does, saying every `every_s` what the
    job waits for: on a cluster whose CPUs or GPUs others hold (a Serve app keeps its replicas'
    until `serve shutdown`), the job would otherwise wait in silence."""
    import ray

    while not ray.wait([ref], timeout=every_s)[0]:
        free, total = ray.available_resources(), ray.cluster_resources()
        have = ", ".join(f"{r} {free.get(r, 0):g} of {total.get(r, 0):g}" for r in ("CPU", "GPU"))
        log.warning(
            "waiting for the cluster to free %g CPU and %g GPU for an ASR actor (free now: %s); "
            "a Serve app holds its replicas' share until `serve shutdown`",
            run.asr_num_cpus,
            run.asr_num_gpus,
            have,
        )
    return ray.get(ref)


def _describe_asr(asr: AsrConfig):
    """(the models' cards, device, logical GPUs) as a task with the ASR actors' reservation sees them."""
    from cluster.placement import from_ray, logical_gpus
    from pipeline.asr_models import describe_asr_models

    device = from_ray().device
    return describe_asr_models(asr, device), device, logical_gpus()


def run_batch(
    input_uri: str,
    output: str,
    config: PipelineConfig = PipelineConfig(),
    request: Request = Request(),
    run: RunOptions = RunOptions(),
    per_segment: bool = False,
) -> Summary:
    import ray
    from tqdm import tqdm

    from cluster.inputs import list_inputs

    summary = Summary(run_id=new_run_id())
    started = time.perf_counter()
    fs, paths = list_inputs(input_uri)
    summary.files_listed = len(paths)
    # what a killed run's surviving workers wrote after it died, then what is done
    done = done_keys(deduplicate(output).parts, run.retry_failed)

    if not ray.is_initialized():
        ray.init(logging_level="WARNING", log_to_driver=False, include_dashboard=False)
    pass_actor_arguments_by_value()  # actors restart from their own task spec (cluster/restartable.py)
    job = plan_job(config, request, run, per_segment)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False

    # Everything but the ASR actors asks for a quarter CPU (their real use is small or bursty),
    # so on a small machine the stages always fit together; Ray Data's default of 1 CPU a task
    # deadlocks a 2-CPU machine once the model actors hold their share.
    light = 0.25
    # A Ray Data task emits its rows as one block when it ends, so a block is the unit that
    # reaches Parquet: one file per read block (up to MAX_READ_BLOCKS) and decode batches no
    # larger than a write batch keep what a killed job loses to the batches in flight.
    blocks = max(1, min(len(paths), MAX_READ_BLOCKS))
    ds = ray.data.read_binary_files(
        paths, include_paths=True, filesystem=fs, override_num_blocks=blocks, num_cpus=light
    )
    ds = ds.map(hash_row, fn_kwargs={"job": job}, num_cpus=light)
    ds = ds.filter(lambda row: row["key"] not in done, num_cpus=light)
    if run.max_files is not None:
        ds = ds.limit(run.max_files)

    def actors(ds, stage, size: int, batch: int = run.files_per_batch, **resources):
        pool = ray.data.ActorPoolStrategy(size=size)
        return ds.map_batches(
            stage, fn_constructor_kwargs={"job": job}, batch_size=batch, compute=pool, batch_format="numpy", **resources
        )

    preprocess_batch = min(PREPROCESS_BATCH, run.files_per_batch)
    ds = actors(ds, Preprocess, run.preprocess_actors, preprocess_batch, num_cpus=light)
    ds = actors(ds, Transcribe, run.asr_actors, num_cpus=run.asr_num_cpus, num_gpus=run.asr_num_gpus)
    if job.plan.diarize:
        ds = actors(ds, Diarize, 1, num_cpus=light, num_gpus=run.diarize_num_gpus)
    ds = ds.map_batches(
        ParquetSink(output, job, summary.run_id), batch_size=run.files_per_batch, num_cpus=light, batch_format="numpy"
    )

    total = min(len(paths), run.max_files or len(paths))
    progress = tqdm(total=total, unit="file", desc="transcribing", disable=not run.progress, file=sys.stderr)
    for row in ds.iter_rows():
        summary.files_done += 1
        summary.audio_seconds += float(row["duration_s"] or 0.0)
        if row["error_code"]:
            summary.failures += 1
            progress.write(f"failed: {row['path']}: {row['error_code']}")
        progress.update(1)
    progress.close()
    # A killed earlier run's workers may have landed a batch this run redid; a retried
    # failure's new row replaces its error row.
    deduplicate(output)
    if run.stats:
        print(ds.stats(), file=sys.stderr)
    # Every listed file is either transcribed now or already in OUTPUT, unless --max-files cut
    # the run short (then the rest is simply left for the next run).
    summary.files_skipped = len(paths) - summary.files_done if run.max_files is None else None
    summary.wall_seconds = time.perf_counter() - started
    return summary


# RunOptions' fields whose flags have shorter names (--num-gpus, --asr-cpus, --diarize-gpus)
FLAGS = {"asr_num_gpus": "num_gpus", "asr_num_cpus": "asr_cpus", "diarize_num_gpus": "diarize_gpus"}
COMMAND = {"description": __doc__, "formatter_class": argparse.RawDescriptionHelpFormatter}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cluster.batch", **COMMAND)
    add_arguments(parser)
    return parser


def add_batch_command(commands) -> None:
    parser = commands.add_parser(
        "batch", help="transcribe a folder, glob or manifest with Ray Data into Parquet", **COMMAND
    )
    add_arguments(parser)
    parser.set_defaults(run=lambda args: main(args=args))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.cli import add_model_arguments, add_request_arguments

    parser.add_argument("input", help="folder, glob, or .parquet/.csv manifest with a 'path' column (local or URI)")
    parser.add_argument("output", help="folder (local or URI) for the Parquet parts; reruns resume into it")
    add_request_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("--per-segment", action="store_true", help="one row per segment instead of per file")
    # RunOptions' fields (its defaults, below)
    parser.add_argument("--asr-actors", type=int, help="ASR actors (one per GPU on a cluster)")
    parser.add_argument("--num-gpus", type=float, help="GPUs per ASR actor (fractions allowed)")
    parser.add_argument("--asr-cpus", type=float, help="CPUs per ASR actor; its threads follow (1.25 -> 2 threads)")
    parser.add_argument("--diarize-gpus", type=float, help="GPUs for the diarization actor")
    parser.add_argument("--preprocess-actors", type=int, help="decode + VAD actors (CPU)")
    parser.add_argument("--files-per-batch", type=int)
    parser.add_argument("--max-files", type=int, help="stop after this many new files")
    parser.add_argument("--retry-failed", action="store_true", help="redo files recorded as errors")
    parser.add_argument("--no-progress", action="store_false", dest="progress")
    parser.add_argument("--stats", action="store_true", help="print Ray Data's per-stage timings at the end")
    parser.set_defaults(**{FLAGS.get(k, k): v for k, v in asdict(RunOptions()).items()})


def main(argv: list[str] | None = None, args: argparse.Namespace | None = None) -> int:
    from pipeline.cli import config_from_args, request_from_args
    from pipeline.errors import PipelineError

    args = args or build_parser().parse_args(argv)
    run = RunOptions(**{f.name: getattr(args, FLAGS.get(f.name, f.name)) for f in fields(RunOptions)})
    try:
        summary = run_batch(
            args.input, args.output, config_from_args(args), request_from_args(args), run, per_segment=args.per_segment
        )
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
