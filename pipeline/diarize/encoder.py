"""resemblyzer's speaker encoder (weights in its wheel): mel frames -> speaker embeddings."""

from __future__ import annotations

import numpy as np

from pipeline.batching import ForwardBatcher
from pipeline.diarize.config import DiarizeConfig
from pipeline.placement import Placement
from pipeline.schema import SAMPLE_RATE, Audio

FRAME_SECONDS = 0.01  # one mel frame: 10 ms
WINDOW_FRAMES = 160  # the encoder's partial utterance: 160 x 10 ms = 1.6 s
EMBEDDING_SIZE = 256
EMBED_ROWS = 256  # windows one request sends the encoder at a time (bounded memory per call)
# resemblyzer's mel frames: 25 ms windows every 10 ms at 16 kHz, 40 channels
N_FFT, HOP, MEL_CHANNELS = 400, 160, 40
TARGET_DBFS = -30.0  # resemblyzer's volume normalisation (raised only)
# Frames per spectrum computed at once (60 s): the whole file's spectrum (complex128, 19 MiB
# per audio minute) would make a 3-hour file's diarization peak 3.5 GiB higher.
MEL_BLOCK_FRAMES = 6000


def mel_frames(samples: np.ndarray) -> np.ndarray:
    """(frames, 40) mel power frames every 10 ms, as the encoder was trained on: resemblyzer's
    `wav_to_mel_spectrogram(normalize_volume(samples, -30, increase_only=True))`, a minute at a
    time. Each frame sees the samples it would in one whole-file spectrum (librosa centres
    frames on zero padding at the ends), so the blocks join without a seam."""
    import librosa

    gain = _volume_gain(samples)
    count = 1 + len(samples) // HOP
    out = np.empty((count, MEL_CHANNELS), dtype=np.float32)
    for first in range(0, count, MEL_BLOCK_FRAMES):
        last = min(count, first + MEL_BLOCK_FRAMES)
        # frame f is centred on sample f * HOP: the block needs N_FFT / 2 either side
        lo, hi = first * HOP - N_FFT // 2, (last - 1) * HOP + N_FFT // 2
        block = samples[max(lo, 0) : min(hi, len(samples))]
        block = block * gain if gain is not None else block
        block = np.pad(block, (max(0, -lo), max(0, hi - len(samples))))
        spectrum = librosa.feature.melspectrogram(
            y=block, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=MEL_CHANNELS, center=False
        )
        out[first:last] = spectrum.T
    return out


def _volume_gain(samples: np.ndarray) -> np.float64 | None:
    """resemblyzer's normalize_volume as a factor (None: left as it is). A float64 factor, as
    there, so the spectrum is computed in float64 as the encoder's own preprocessing does."""
    squares = 0.0
    for start in range(0, len(samples), 2**20):  # in float64, a million samples at a time
        block = samples[start : start + 2**20].astype(np.float64)
        squares += float(np.dot(block, block))
    if not squares:
        return None  # silence: nothing to raise (resemblyzer's would divide by zero)
    change = TARGET_DBFS - 10 * np.log10(squares / len(samples))
    return None if change < 0 else np.float64(10 ** (change / 20))


def partial_windows(frames: np.ndarray) -> list[np.ndarray]:
    """1.6 s encoder inputs covering `frames` (mel frames of one speaker's stretch): short ones
    are repeated to length, long ones cut into windows that tile it end to end."""
    if len(frames) < WINDOW_FRAMES:
        reps = -(-WINDOW_FRAMES // len(frames))
        return [np.tile(frames, (reps, 1))[:WINDOW_FRAMES]]
    n = -(-(len(frames) - WINDOW_FRAMES) // WINDOW_FRAMES) + 1
    starts = np.linspace(0, len(frames) - WINDOW_FRAMES, n).round().astype(int)
    return [frames[s : s + WINDOW_FRAMES] for s in starts]


class SpeakerEncoder:
    """Calls from concurrent requests share forwards through one `ForwardBatcher`."""

    def __init__(self, config: DiarizeConfig, placement: Placement):
        import warnings

        import torch

        with warnings.catch_warnings():  # webrtcvad (imported by resemblyzer) warns about pkg_resources
            warnings.simplefilter("ignore")
            from resemblyzer import VoiceEncoder

        self.model = VoiceEncoder(device=torch.device(placement.torch_device), verbose=False)
        self.model.eval()
        config.runtime.prepare(self.model, placement, "diarize")
        self.batcher = ForwardBatcher(self._encode, max_rows=4 * EMBED_ROWS)
        # librosa's first mel spectrogram compiles kernels: pay that at load, not per request.
        noise = np.random.default_rng(0).normal(0, 0.05, 2 * SAMPLE_RATE).astype(np.float32)
        self(self.mel(Audio(noise))[None, :WINDOW_FRAMES])

    def mel(self, audio: Audio) -> np.ndarray:
        return mel_frames(audio.samples)

    def __call__(self, mels: np.ndarray) -> np.ndarray:
        """(rows, 160, 40) -> (rows, 256) unit embeddings."""
        return self.batcher(mels)

    def _encode(self, mels: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():  # thread-local: set in whichever caller runs the batch
            return self.model(torch.from_numpy(mels).to(self.model.device)).cpu().numpy()
