"""Decode uploads and files to 16 kHz mono float32 with the ffmpeg CLI, without temp files.

`open_audio` checks the size, `probe` reads the duration from the header only (a 4-hour FLAC of
silence is refused in milliseconds), `decode` streams into one array that stops at the limit
whatever the header said, asking an optional `DecodeBudget` before every allocation. Bytes reach
ffmpeg through a memfd, so formats that seek (m4a with its index at the end) decode too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.errors import AudioDecodeError, AudioEmpty, AudioTooLarge, AudioTooLong, AudioTruncated
from pipeline.schema import SAMPLE_RATE, Audio

_READ_BYTES = 4 * SAMPLE_RATE * 2  # ffmpeg's s16le output is read 4 s at a time
_EXACT_HEADERS = ("WAV", "WAVEX", "RF64", "W64", "AIFF", "CAF", "FLAC", "OGG")  # frame counts, not guesses
_SF_UNKNOWN = 2**62  # libsndfile's frame count for "not in the header" is SF_COUNT_MAX
_DECODE_ERRORS = ("error while decoding", "invalid data found", "invalid residual", "corrupt")


@dataclass(frozen=True)
class AudioLimits:
    """Upper bounds on what one input may cost; all are configuration."""

    max_bytes: int = 200 * 1024 * 1024
    max_seconds: float = 4 * 3600.0
    decode_timeout_s: float = 600.0

    @property
    def max_samples(self) -> int:
        return int(self.max_seconds * SAMPLE_RATE)


@dataclass(frozen=True)
class Probe:
    """What the container header says, before any decoding."""

    seconds: float | None  # None: the header does not say (a raw stream, an unfinished file)
    estimated: bool = False  # ffmpeg guessed it from the bitrate: may be far off either way


class DecodeBudget(Protocol):
    """Asked before each allocation of `nbytes` more (they add up); raises to stop the decode
    (e.g. the service is full)."""

    def reserve(self, nbytes: int) -> None: ...


def ffmpeg_path(tool: str = "ffmpeg") -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is not installed: run ./setup.sh, or `apt-get install ffmpeg`")
    return path


def load_audio(
    source: str | os.PathLike | bytes, limits: AudioLimits = AudioLimits(), budget: DecodeBudget | None = None
) -> Audio:
    """Decode a path or raw bytes (any container ffmpeg reads) to an `Audio`.

    Raises AudioEmpty, AudioTooLarge, AudioTooLong, AudioTruncated or AudioDecodeError.
    """
    with open_audio(source, limits) as opened:
        opened.probe()
        return opened.decode(budget)


def open_audio(source: str | os.PathLike | bytes, limits: AudioLimits = AudioLimits()) -> AudioInput:
    """Check the input's size (no decoding yet) and hold it open for `probe` and `decode`."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, path, label = bytes(source), None, "the audio"
        size = len(data)
    else:
        data, path = None, Path(source)
        if not path.is_file():
            raise AudioDecodeError(f"no such audio file: {path}")
        size, label = path.stat().st_size, str(path)
    if size == 0:
        raise AudioEmpty(f"{label} is empty (0 bytes)")
    if size > limits.max_bytes:
        raise AudioTooLarge(f"{label} is {size} bytes; the limit is {limits.max_bytes}")
    return AudioInput(limits, "<bytes>" if path is None else label, data=data, path=path)


class AudioInput:
    """One input, opened: `probe()` reads its header, `decode()` streams it into an `Audio`."""

    def __init__(self, limits: AudioLimits, name: str, *, data: bytes | None = None, path: Path | None = None):
        self.limits, self.name = limits, name
        self.size = len(data) if data is not None else path.stat().st_size
        self._probe: Probe | None = None
        self._info = False  # libsndfile's header info once read (None: unreadable by it)
        self._fd: int | None = None
        if path is not None:
            self._arg, self._fds, self._stdin = str(path), (), None
        elif hasattr(os, "memfd_create"):
            self._fd = os.memfd_create("whisperx-serve-upload")
            os.write(self._fd, data)
            self._arg, self._fds, self._stdin = f"/proc/self/fd/{self._fd}", (self._fd,), None
        else:  # no memfd: stream through stdin (seekable-only formats will fail to decode)
            self._arg, self._fds, self._stdin = "pipe:0", (), data

    def __enter__(self) -> AudioInput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # --- the header ---------------------------------------------------------------------------

    def probe(self) -> Probe:
        """The declared duration, from the header only. Raises AudioTooLong when the header
        already says the input is over the limit (a decompression bomb costs nothing)."""
        if self._probe is None:
            self._probe = self._sndfile_probe() or self._ffprobe()
            if self._probe.seconds is not None and not self._probe.estimated:
                if self._probe.seconds > self.limits.max_seconds:
                    raise AudioTooLong(
                        f"{self.name} is {self._probe.seconds:.0f} s long (from its header); "
                        f"the limit is {self.limits.max_seconds:.0f} s"
                    )
        return self._probe

    def expected_seconds(self) -> float:
        """What the input will probably decode to, for admission: the header's duration, or
        (no header) the size at a low 16 kbit/s, within the limit."""
        probe = self.probe()
        guess = probe.seconds if probe.seconds is not None else self.size / 2000.0
        return min(guess, self.limits.max_seconds)

    def _sndfile_info(self):
        """libsndfile's view of the header, read once (None: not a format it reads)."""
        import soundfile

        if self._info is False:
            self._info = None
            if self._stdin is None:
                try:
                    self._info = soundfile.info(self._arg)
                except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
                    pass
        return self._info

    def _sndfile_probe(self) -> Probe | None:
        info = self._sndfile_info()
        if info is None:
            return None
        if info.format not in _EXACT_HEADERS or info.frames <= 0 or info.samplerate <= 0:
            return None  # MP3 and the like: ffprobe knows when its duration is only a guess
        if info.frames >= _SF_UNKNOWN:
            return Probe(None)  # a stream written without its length (e.g. FLAC to a pipe)
        return Probe(info.frames / info.samplerate)

    def _ffprobe(self) -> Probe:
        cmd = [ffmpeg_path("ffprobe"), "-hide_banner", "-of", "json", "-show_entries", "format=duration", self._arg]
        try:
            proc = subprocess.run(
                cmd, input=self._stdin, capture_output=True, timeout=60, pass_fds=self._fds, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise AudioDecodeError(f"reading the header of {self.name} took longer than 60 s") from exc
        log = proc.stderr.decode("utf-8", "replace")
        if proc.returncode != 0:
            reason = _last_line(log).replace(self._arg, self.name)
            raise AudioDecodeError(f"cannot decode {self.name} as audio: {reason}")
        try:
            seconds = float(json.loads(proc.stdout or b"{}").get("format", {}).get("duration"))
        except (TypeError, ValueError):
            seconds = float("nan")
        seconds = seconds if np.isfinite(seconds) else None
        return Probe(seconds, estimated="estimating duration" in log.lower())

    # --- decoding -----------------------------------------------------------------------------

    def decode(self, budget: DecodeBudget | None = None) -> Audio:
        probe = self.probe()  # refuses a header over the limit before anything is decoded
        if (fast := self._read_pcm16k(budget)) is not None:
            return fast
        return self._ffmpeg_stream(probe, budget)

    def _read_pcm16k(self, budget: DecodeBudget | None) -> Audio | None:
        """16 kHz mono 16-bit WAV/FLAC (most speech corpora) read in-process with libsndfile:
        the same samples ffmpeg would give, without starting a process. None for anything
        else, which goes to ffmpeg."""
        import soundfile

        info = self._sndfile_info()
        if info is None:
            return None
        try:
            if (
                info.samplerate != SAMPLE_RATE
                or info.channels != 1
                or info.format not in ("WAV", "FLAC")
                or info.subtype != "PCM_16"
                or info.frames >= _SF_UNKNOWN
            ):
                return None
            if budget is not None:
                budget.reserve(info.frames * 4)
            pcm, _ = soundfile.read(self._arg, dtype="int16", always_2d=False)
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
            return None  # unreadable or unusual here: let ffmpeg decode it or say why not
        if len(pcm) < info.frames:
            raise AudioTruncated(f"{self.name} is truncated: {len(pcm)} of {info.frames} samples")
        if len(pcm) == 0:
            raise AudioEmpty(f"{self.name} holds no audio samples")
        samples = np.empty(len(pcm), np.float32)
        np.multiply(pcm, np.float32(1 / 32768), out=samples, casting="unsafe")
        return Audio(samples=samples)

    def _ffmpeg_stream(self, probe: Probe, budget: DecodeBudget | None) -> Audio:
        limits = self.limits
        cap = limits.max_samples
        cmd = [ffmpeg_path(), *"-nostdin -hide_banner -nostats -loglevel error -threads 0 -i".split(), self._arg]
        # -t: one second past the limit, enough to know it is too long
        cmd += f"-t {limits.max_seconds + 1.0:.3f} -f s16le -ac 1 -acodec pcm_s16le -ar {SAMPLE_RATE} -".split()
        # The first allocation trusts the header (plus a second); a header that lies or is
        # missing makes the array grow by half as samples keep coming, never past the limit.
        guess = probe.seconds if probe.seconds is not None else 60.0
        out = self._allocate(min(cap + 1, int((guess + 1.0) * SAMPLE_RATE)), budget)
        errors = _StderrLog()
        stdin = subprocess.PIPE if self._stdin is not None else subprocess.DEVNULL
        with subprocess.Popen(
            cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=self._fds
        ) as proc:
            errors.drain(proc.stderr)
            if self._stdin is not None:
                threading.Thread(target=_feed, args=(proc.stdin, self._stdin), daemon=True).start()
            timed_out = threading.Event()
            timer = threading.Timer(limits.decode_timeout_s, lambda: (timed_out.set(), proc.kill()))
            timer.start()
            count = 0
            try:
                while block := proc.stdout.read(_READ_BYTES):
                    pcm = np.frombuffer(block, np.int16, len(block) // 2)
                    if count + len(pcm) > cap:
                        raise AudioTooLong(f"{self.name} is longer than the limit of {limits.max_seconds:.0f} s")
                    if count + len(pcm) > len(out):  # grow by half, never past the limit
                        bigger = self._allocate(min(cap + 1, max(count + len(pcm), len(out) * 3 // 2)), budget)
                        bigger[:count] = out[:count]
                        out = bigger
                    np.multiply(pcm, np.float32(1 / 32768), out=out[count : count + len(pcm)], casting="unsafe")
                    count += len(pcm)
                returncode = proc.wait()
            except BaseException:
                proc.kill()
                raise
            finally:
                timer.cancel()
        log = errors.text()
        if timed_out.is_set():
            raise AudioDecodeError(f"decoding {self.name} took longer than {limits.decode_timeout_s:.0f} s")
        if returncode != 0 or count == 0:
            if returncode == 0:
                raise AudioEmpty(f"{self.name} holds no audio samples")
            reason = _last_line(log).replace(self._arg, self.name)
            raise AudioDecodeError(f"cannot decode {self.name} as audio: {reason}")
        decoded_s = count / SAMPLE_RATE
        declared_s = probe.seconds if not probe.estimated else None
        if any(marker in log.lower() for marker in _DECODE_ERRORS) or (
            declared_s is not None and declared_s - decoded_s > max(1.0, 0.1 * declared_s)
        ):
            declared = f"{declared_s:.2f} s" if declared_s is not None else "unknown"
            raise AudioTruncated(
                f"{self.name} is truncated or corrupt: decoded {decoded_s:.2f} s of a declared {declared}"
            )
        # Trim only when the header promised much more than came (the copy is then small).
        samples = out[:count] if len(out) - count <= SAMPLE_RATE * 2 else out[:count].copy()
        return Audio(samples=samples)

    @staticmethod
    def _allocate(samples: int, budget: DecodeBudget | None) -> np.ndarray:
        if budget is not None:
            budget.reserve(samples * 4)
        return np.empty(samples, np.float32)


class _StderrLog:
    """ffmpeg's error log, read on a thread so a chatty decoder never blocks on a full pipe;
    kept to its last 64 KiB."""

    def __init__(self):
        self._parts: list[bytes] = []
        self._thread: threading.Thread | None = None

    def drain(self, stream) -> None:
        def run():
            size = 0
            for line in stream:
                self._parts.append(line)
                size += len(line)
                while size > 65536 and len(self._parts) > 1:
                    size -= len(self._parts.pop(0))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def text(self) -> str:
        if self._thread is not None:
            self._thread.join(timeout=5)
        return b"".join(self._parts).decode("utf-8", "replace")


def _feed(stdin, data: bytes) -> None:
    try:
        stdin.write(data)
        stdin.close()
    except (BrokenPipeError, OSError):
        pass  # ffmpeg stopped reading (limit reached or bad input): its exit code says why


def _last_line(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return lines[-1] if lines else "ffmpeg gave no reason"
