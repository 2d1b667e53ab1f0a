"""The `whisperx-serve` command: `transcribe` (in-process pipeline) and `batch` (Ray Data)."""

from __future__ import annotations

import argparse
import sys

from cluster.batch import add_batch_command
from pipeline import cli as pipeline_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whisperx-serve", description="WhisperX as a library, service and batch job")
    commands = parser.add_subparsers(dest="command", required=True)
    pipeline_cli.add_transcribe_command(commands)
    add_batch_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    return pipeline_cli.main(argv, parser=build_parser())


if __name__ == "__main__":
    sys.exit(main())
