"""Decode uploads and files to 16 kHz mono float32 with the ffmpeg CLI, without temp files.

Bytes go to ffmpeg through an in-memory file (memfd), so formats that need to seek
(m4a with its index at the end) decode as well as streamable ones.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import AudioDecodeError, AudioEmpty, AudioTooLarge, AudioTooLong, AudioTruncated
from pipeline.schema import SAMPLE_RATE, Audio

_DURATION_RE = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_DECODE_ERROR_RE = re.compile(r"Error while decoding|Invalid data found|invalid residual|corrupt", re.I)


@dataclass(frozen=True)
class AudioLimits:
    """Upper bounds on what one input may cost; both are configuration."""

    max_bytes: int = 200 * 1024 * 1024
    max_seconds: float = 4 * 3600.0
    decode_timeout_s: float = 600.0


def ffmpeg_path() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise RuntimeError("ffmpeg is not installed: run ./setup.sh, or `apt-get install ffmpeg`")
    return path


def load_audio(source: str | os.PathLike | bytes, limits: AudioLimits = AudioLimits()) -> Audio:
    """Decode a path or raw bytes (any container ffmpeg reads) to an `Audio`.

    Raises AudioEmpty, AudioTooLarge, AudioTooLong, AudioTruncated or AudioDecodeError.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise AudioEmpty("the audio is empty (0 bytes)")
        if len(data) > limits.max_bytes:
            raise AudioTooLarge(f"the audio is {len(data)} bytes; the limit is {limits.max_bytes}")
        return _read_pcm16k(io.BytesIO(data), limits, "<bytes>") or _decode_bytes(data, limits)
    path = Path(source)
    if not path.is_file():
        raise AudioDecodeError(f"no such audio file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise AudioEmpty(f"{path} is empty (0 bytes)")
    if size > limits.max_bytes:
        raise AudioTooLarge(f"{path} is {size} bytes; the limit is {limits.max_bytes}")
    return _read_pcm16k(path, limits, str(path)) or _run_ffmpeg(str(path), limits, source_name=str(path))


def _read_pcm16k(source, limits: AudioLimits, name: str) -> Audio | None:
    """16 kHz mono 16-bit WAV/FLAC (most speech corpora) read in-process with libsndfile:
    the same samples ffmpeg would give, without starting a process. None for anything
    else, which goes to ffmpeg."""
    import soundfile

    try:
        info = soundfile.info(source)
        if (
            info.samplerate != SAMPLE_RATE
            or info.channels != 1
            or info.format not in ("WAV", "FLAC")
            or info.subtype != "PCM_16"
        ):
            return None
        if info.frames / SAMPLE_RATE > limits.max_seconds:
            raise AudioTooLong(f"{name} is {info.frames / SAMPLE_RATE:.0f} s; the limit is {limits.max_seconds:.0f} s")
        if hasattr(source, "seek"):
            source.seek(0)
        pcm, _ = soundfile.read(source, dtype="int16", always_2d=False)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None  # unreadable or unusual here: let ffmpeg decode it or say why not
    if len(pcm) < info.frames:
        raise AudioTruncated(f"{name} is truncated: {len(pcm)} of {info.frames} samples")
    if len(pcm) == 0:
        raise AudioEmpty(f"{name} holds no audio samples")
    return Audio(samples=pcm.astype(np.float32) / 32768.0, source=name)


def _decode_bytes(data: bytes, limits: AudioLimits) -> Audio:
    if not hasattr(os, "memfd_create"):
        return _run_ffmpeg("pipe:0", limits, source_name="<bytes>", stdin=data)
    fd = os.memfd_create("whisperx-serve-upload")
    try:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        return _run_ffmpeg(f"/proc/self/fd/{fd}", limits, source_name="<bytes>", pass_fds=(fd,))
    finally:
        os.close(fd)


def _run_ffmpeg(
    input_arg: str, limits: AudioLimits, *, source_name: str, stdin: bytes | None = None, pass_fds: tuple[int, ...] = ()
) -> Audio:
    # Decode at most one second past the limit: enough to know it is too long, bounded memory.
    cap_s = limits.max_seconds + 1.0
    cmd = [
        ffmpeg_path(),
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-threads",
        "0",
        "-i",
        input_arg,
        "-t",
        f"{cap_s:.3f}",
        "-f",
        "s16le",
        "-ac",
        "1",
        "-acodec",
        "pcm_s16le",
        "-ar",
        str(SAMPLE_RATE),
        "-",
    ]
    try:
        proc = subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            timeout=limits.decode_timeout_s,
            pass_fds=pass_fds,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AudioDecodeError(f"decoding {source_name} took longer than {limits.decode_timeout_s:.0f} s") from exc
    log = proc.stderr.decode("utf-8", "replace")
    pcm = proc.stdout
    if proc.returncode != 0 or not pcm:
        if proc.returncode == 0:
            raise AudioEmpty(f"{source_name} holds no audio samples")
        reason = _last_error_line(log).replace(input_arg, source_name)
        raise AudioDecodeError(f"cannot decode {source_name} as audio: {reason}")
    samples = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0
    decoded_s = len(samples) / SAMPLE_RATE
    if decoded_s > limits.max_seconds:
        raise AudioTooLong(f"{source_name} is longer than the limit of {limits.max_seconds:.0f} s")
    declared_s = _declared_duration(log)
    if _DECODE_ERROR_RE.search(log) or (
        declared_s is not None
        and declared_s - decoded_s > max(1.0, 0.1 * declared_s)
        and "estimating duration" not in log.lower()
    ):
        declared = f"{declared_s:.2f} s" if declared_s is not None else "unknown"
        raise AudioTruncated(
            f"{source_name} is truncated or corrupt: decoded {decoded_s:.2f} s of a declared {declared}"
        )
    return Audio(samples=samples, source=source_name)


def _declared_duration(log: str) -> float | None:
    match = _DURATION_RE.search(log)
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _last_error_line(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return lines[-1] if lines else "ffmpeg gave no reason"
