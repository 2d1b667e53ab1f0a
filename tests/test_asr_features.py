"""The ASR's log-Mel features skip the Fourier transforms of a chunk's zero padding and stay
whisperx's exactly: bit for bit, on real speech and noise, at every kind of length."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from whisperx.audio import log_mel_spectrogram

from pipeline.asr import N_SAMPLES, log_mel_30s
from pipeline.audio import load_audio

LENGTHS = (1, 399, 400, 16000, 16000 * 3 + 17, 160 * 1234, 16000 * 29 + 5, N_SAMPLES - 801, N_SAMPLES - 799, N_SAMPLES)


def whisperx_features(samples: torch.Tensor, n_mels: int) -> torch.Tensor:
    return log_mel_spectrogram(samples, n_mels=n_mels, padding=N_SAMPLES - samples.shape[0])


@pytest.mark.parametrize("n_mels", [80, 128])
def test_features_equal_whisperx_on_noise(n_mels):
    rng = np.random.default_rng(44)
    for length in LENGTHS:
        samples = torch.from_numpy((rng.standard_normal(length) * 0.1).astype(np.float32))
        ours, theirs = log_mel_30s(samples, n_mels), whisperx_features(samples, n_mels)
        assert ours.shape == theirs.shape == (n_mels, N_SAMPLES // 160)
        assert torch.equal(ours, theirs), f"{length} samples"


def test_features_equal_whisperx_on_speech(speech_dir):
    speech = load_audio(speech_dir / "librispeech" / "19-198-0001.wav").samples
    for seconds in (0.5, 2.0, 7.3, 11.0):
        samples = torch.from_numpy(np.ascontiguousarray(speech[: int(seconds * 16000)]))
        assert torch.equal(log_mel_30s(samples, 80), whisperx_features(samples, 80)), f"{seconds} s"
