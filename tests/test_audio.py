"""Decoding: formats, channels and rates, limits, and the typed errors for bad input."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from pipeline.audio import AudioLimits, load_audio, open_audio
from pipeline.errors import AudioDecodeError, AudioEmpty, AudioTooLarge, AudioTooLong, AudioTruncated
from tests.conftest import ffmpeg

# extension -> (sample rate, encoder args); opus only takes 48 kHz, the others 44.1 kHz.
FORMATS = {
    "wav": (44100, []),
    "flac": (44100, []),
    "mp3": (44100, ["-b:a", "64k"]),
    "ogg": (48000, ["-c:a", "libopus"]),
    "m4a": (44100, ["-c:a", "aac"]),
}


@pytest.fixture(scope="module")
def reference(pyannote_sample):
    return load_audio(pyannote_sample)


def test_sample_decodes_to_16k_mono_float(reference):
    assert reference.samples.dtype == np.float32
    assert reference.samples.ndim == 1
    assert reference.duration == pytest.approx(30.0, abs=0.01)
    assert 0.01 < float(np.abs(reference.samples).max()) <= 1.0


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_formats_from_path_and_bytes(ext, pyannote_sample, reference, tmp_path):
    # 44.1/48 kHz stereo input exercises resampling and down-mixing as well as the codec.
    rate, codec = FORMATS[ext]
    path = tmp_path / f"sample.{ext}"
    ffmpeg("-i", str(pyannote_sample), "-ac", "2", "-ar", str(rate), *codec, str(path))
    from_path = load_audio(path)
    from_bytes = load_audio(path.read_bytes())
    assert from_path.duration == pytest.approx(reference.duration, abs=0.1)
    np.testing.assert_array_equal(from_path.samples, from_bytes.samples)
    n = min(len(reference.samples), len(from_path.samples))
    if ext in ("wav", "flac"):  # lossless: resampled there and back, still the same signal
        corr = np.corrcoef(reference.samples[:n], from_path.samples[:n])[0, 1]
        assert corr > 0.99


def test_stereo_is_averaged_to_mono(tmp_path):
    # left = 440 Hz tone, right = silence -> mono is half the tone's amplitude
    path = tmp_path / "stereo.wav"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=16000:duration=1",
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=16000:cl=mono",
        "-filter_complex",
        "[0:a][1:a]amerge=inputs=2[a]",
        "-map",
        "[a]",
        "-t",
        "1",
        str(path),
    )
    audio = load_audio(path)
    tone = load_audio(_tone(tmp_path))
    assert np.abs(audio.samples).max() == pytest.approx(np.abs(tone.samples).max() / 2, rel=0.05)


def _tone(tmp_path):
    path = tmp_path / "tone.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=1", str(path))
    return path


def test_empty_bytes():
    with pytest.raises(AudioEmpty):
        load_audio(b"")


def test_empty_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioEmpty):
        load_audio(tmp_path / "empty.wav")


def test_random_bytes_are_undecodable():
    rng = np.random.default_rng(0)
    with pytest.raises(AudioDecodeError) as info:
        load_audio(rng.bytes(4096))
    assert not isinstance(info.value, AudioTruncated)


def test_missing_file(tmp_path):
    with pytest.raises(AudioDecodeError):
        load_audio(tmp_path / "nope.wav")


def test_truncated_flac(pyannote_sample, tmp_path):
    path = tmp_path / "sample.flac"
    ffmpeg("-i", str(pyannote_sample), str(path))
    data = path.read_bytes()
    with pytest.raises(AudioTruncated):
        load_audio(data[: len(data) // 2])


def test_too_long(pyannote_sample):
    with pytest.raises(AudioTooLong):
        load_audio(pyannote_sample, AudioLimits(max_seconds=10))


def test_too_large(pyannote_sample):
    size = os.path.getsize(pyannote_sample)
    with pytest.raises(AudioTooLarge):
        load_audio(pyannote_sample, AudioLimits(max_bytes=size - 1))
    with pytest.raises(AudioTooLarge):
        load_audio(pyannote_sample.read_bytes(), AudioLimits(max_bytes=size - 1))


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_in_process_reader_matches_ffmpeg(ext, pyannote_sample, tmp_path):
    """16 kHz mono 16-bit WAV/FLAC skip the ffmpeg process; the samples must be identical."""
    path = tmp_path / f"s.{ext}"
    ffmpeg("-i", str(pyannote_sample), "-ar", "16000", "-ac", "1", "-sample_fmt", "s16", str(path))
    with open_audio(path) as opened:
        fast = opened._read_pcm16k(None)
        streamed = opened._ffmpeg_stream(opened.probe(), None)
    assert fast is not None
    np.testing.assert_array_equal(fast.samples, streamed.samples)


class Budget:
    """Records what the decoder asks for; refuses past `limit` bytes."""

    def __init__(self, limit: int = 1 << 40):
        self.limit, self.asked = limit, []

    def reserve(self, nbytes: int) -> None:
        self.asked.append(nbytes)
        if sum(self.asked) > self.limit:
            raise MemoryError("over budget")


def _silence(path, seconds: int, *out_args: str):
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-t", str(seconds), *out_args, str(path))


def test_bomb_is_refused_from_its_header(tmp_path):
    """10 minutes of silence in a small FLAC, limit 60 s: refused before any sample is decoded."""
    path = tmp_path / "bomb.flac"
    _silence(path, 600)
    assert path.stat().st_size < 1_000_000  # a decompression bomb: tiny file, long audio
    budget = Budget()
    for source in (path, path.read_bytes()):
        with pytest.raises(AudioTooLong, match="from its header"):
            load_audio(source, AudioLimits(max_seconds=60), budget)
    assert budget.asked == []  # nothing was allocated for samples


def test_headerless_bomb_stops_at_the_limit(tmp_path):
    """A FLAC written to a pipe has no duration in its header: decoding stops at the limit and
    never allocates much more than the limit's worth of samples."""
    path = tmp_path / "headerless.flac"
    with open(path, "wb") as out:
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono"]
            + ["-t", "600", "-f", "flac", "pipe:1"],
            stdout=out,
            check=True,
        )
    with open_audio(path) as opened:
        assert opened.probe().seconds is None or opened.probe().estimated
    budget = Budget()
    with pytest.raises(AudioTooLong):
        load_audio(path.read_bytes(), AudioLimits(max_seconds=60), budget)
    assert max(budget.asked) <= 62 * 16000 * 4  # the array never outgrew the limit (+1 s)


def test_budget_refusal_stops_the_decode(pyannote_sample, tmp_path):
    path = tmp_path / "sample.mp3"
    ffmpeg("-i", str(pyannote_sample), "-b:a", "32k", str(path))
    with pytest.raises(MemoryError):
        load_audio(path, AudioLimits(), Budget(limit=16000 * 4))  # 1 s of samples; the file is 30 s
    budget = Budget()
    audio = load_audio(path, AudioLimits(), budget)
    assert sum(budget.asked) >= audio.samples.nbytes  # every byte held was asked for first


def test_decode_timeout_is_a_clear_error(pyannote_sample, tmp_path):
    path = tmp_path / "sample.mp3"
    ffmpeg("-i", str(pyannote_sample), "-b:a", "32k", str(path))
    with pytest.raises(AudioDecodeError, match="took longer than"):
        load_audio(path, AudioLimits(decode_timeout_s=0.001))
