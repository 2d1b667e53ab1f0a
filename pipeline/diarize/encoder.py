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
        """(frames, 40) log-mel frames every 10 ms, as the encoder was trained on."""
        from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram

        return wav_to_mel_spectrogram(normalize_volume(audio.samples, -30, increase_only=True))

    def __call__(self, mels: np.ndarray) -> np.ndarray:
        """(rows, 160, 40) -> (rows, 256) unit embeddings."""
        return self.batcher(mels)

    def _encode(self, mels: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():  # thread-local: set in whichever caller runs the batch
            return self.model(torch.from_numpy(mels).to(self.model.device)).cpu().numpy()
