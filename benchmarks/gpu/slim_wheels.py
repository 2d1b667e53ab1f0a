"""Repack the whisperx and Resemblyzer wheels with their checkpoints' optimizer state removed,
so that what bench_gpu carries to the device machine fits its 64 MiB.

Same weights, file names and versions; only training leftovers (Adam moments, about two
thirds of each file) go, and RECORD gets the new hashes. Scores and embeddings from the slim
checkpoints were checked bit-identical to the originals. The checkpoints are torch pickles
from the PyPI wheels themselves, the same files whisperx and resemblyzer load; this runs on
the developer's machine only and reads nothing from a client.

    .venv/bin/python benchmarks/gpu/slim_wheels.py SRC_DIR DST_DIR
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import torch

STRIP = {
    "whisperx/assets/pytorch_model.bin": lambda ck: {**ck, "optimizer_states": [], "lr_schedulers": []},
    "resemblyzer/pretrained.pt": lambda ck: {k: v for k, v in ck.items() if k != "optimizer_state"},
}


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def slim(source: Path, target: Path) -> None:
    with zipfile.ZipFile(source) as wheel:
        files = {info.filename: wheel.read(info) for info in wheel.infolist() if not info.is_dir()}
    for name, strip in STRIP.items():
        if name in files:
            checkpoint = torch.load(io.BytesIO(files[name]), map_location="cpu", weights_only=False)
            buffer = io.BytesIO()
            torch.save(strip(checkpoint), buffer)
            files[name] = buffer.getvalue()
    record = next(name for name in files if name.endswith(".dist-info/RECORD"))
    lines = [_record_line(name, data) for name, data in files.items() if name != record]
    files[record] = "\n".join([*lines, f"{record},,", ""]).encode()
    # Wheel order: package files, then metadata, RECORD last.
    order = sorted(files, key=lambda name: (".dist-info/" in name, name == record))
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as wheel:
        for name in order:
            wheel.writestr(name, files[name])


if __name__ == "__main__":
    source_dir, target_dir = Path(sys.argv[1]), Path(sys.argv[2])
    for pattern in ("whisperx-*.whl", "Resemblyzer-*.whl", "resemblyzer-*.whl"):
        for wheel in source_dir.glob(pattern):
            slim(wheel, target_dir / wheel.name)
            size = (target_dir / wheel.name).stat().st_size
            print(f"{wheel.name}: {wheel.stat().st_size / 2**20:.2f} MiB -> {size / 2**20:.2f} MiB")
