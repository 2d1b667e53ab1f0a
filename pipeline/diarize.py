"""Who spoke when: audio -> speaker turns. Needs only the audio (and optionally the VAD's
speech regions), so it runs independently of, and in parallel with, ASR.

Backends:
- offline default (`method="segmentation"`, pipeline/local_speakers.py): pyannote's recipe
  with the segmentation weights inside whisperx (up to three local speakers per 5 s chunk,
  overlap included) and the speaker encoder whose weights ship in `resemblyzer`;
- offline `method="windows"` (the first default, cheaper, one speaker at a time): the
  encoder on 1.6 s windows over the speech, clustered spectrally with the speaker count
  taken from the eigengap when not given, then smoothed into turns;
- pyannote (via whisperx's DiarizationPipeline) when a model is configured: an HF name with
  HF_TOKEN, or a local directory holding config.yaml and weights.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.batching import BatchStats, ForwardBatcher
from pipeline.errors import InvalidOption, ModelNotFound
from pipeline.models import downloads_allowed
from pipeline.placement import Placement
from pipeline.schema import SAMPLE_RATE, Audio, Turn
from pipeline.torch_runtime import TorchRuntime

log = logging.getLogger(__name__)

WINDOW_FRAMES = 160  # resemblyzer's partial utterance: 160 x 10 ms = 1.6 s
FRAME_SECONDS = 0.01
MAX_SPEAKERS = 8
EMBED_ROWS = 256  # windows one request sends the encoder at a time (bounded memory per call)


@dataclass(frozen=True)
class SpeakerCount:
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None

    @property
    def given(self) -> bool:
        return (self.num_speakers, self.min_speakers, self.max_speakers) != (None, None, None)

    def bounds(self) -> tuple[int, int]:
        if self.num_speakers is not None:
            if not 1 <= self.num_speakers <= 32:
                raise InvalidOption("num_speakers must be between 1 and 32")
            return self.num_speakers, self.num_speakers
        low = 1 if self.min_speakers is None else self.min_speakers
        high = max(low, MAX_SPEAKERS) if self.max_speakers is None else self.max_speakers
        if not 1 <= low <= high:
            raise InvalidOption("need 1 <= min_speakers <= max_speakers")
        return low, high


OFFLINE_METHODS = ("segmentation", "windows")


@dataclass(frozen=True)
class DiarizeConfig:
    model: str | None = None  # None: an offline method; else pyannote name or directory
    method: str = "segmentation"  # the offline backend: "segmentation" or "windows"
    # Chunk step of the segmentation method (chunks are 5 s): 1 s scores every frame five times.
    segmentation_step: float = 1.0
    hop_seconds: float = 0.2  # window step of the "windows" method
    # "windows" method: fraction of each window's most similar windows kept in the affinity graph. Measured on
    # shared/data/speech: 0.5 found the right speaker count on 7 of 8 files (1-3 speakers).
    keep_fraction: float = 0.5
    # Precision and compile of the offline speaker encoder. A pyannote pipeline runs as
    # pyannote configures it (float32, not compiled): its models sit inside its pipeline.
    runtime: TorchRuntime = TorchRuntime()

    @property
    def model_id(self) -> str:
        """The id reported for the turns (pure: nothing is loaded)."""
        if self.model:
            return f"pyannote/{self.model}"
        if self.method == "windows":
            return "resemblyzer+spectral"
        return "whisperx-segmentation+resemblyzer"

    def check(self) -> None:
        if self.method not in OFFLINE_METHODS:
            raise InvalidOption(f"diarize method must be one of {', '.join(OFFLINE_METHODS)}, not {self.method!r}")
        if not 0.1 <= self.segmentation_step <= 5.0:
            raise InvalidOption("diarize segmentation_step must be between 0.1 and 5 seconds")


class Diarizer:
    def __init__(self, config: DiarizeConfig = DiarizeConfig(), placement: Placement = Placement()):
        self.config = config
        self.model_id = config.model_id
        config.runtime.check(placement, "diarize")
        config.check()
        if config.model:
            if config.runtime != TorchRuntime():
                log.warning("torch dtype / compile apply to the offline speaker encoder, not to pyannote pipelines")
            self._backend = _PyannoteBackend(config.model, placement.torch_device)
        elif config.method == "segmentation":
            from pipeline.local_speakers import SegmentationBackend

            self._backend = SegmentationBackend(config, placement)
        else:
            self._backend = _EncoderBackend(config, placement)

    def diarize(
        self, audio: Audio, speech: list[tuple[float, float]] | None = None, count: SpeakerCount = SpeakerCount()
    ) -> list[Turn]:
        """Speaker turns in time order. `speech`: the VAD's regions (computed if omitted by
        the offline backend's caller; pyannote finds its own)."""
        return self._backend.diarize(audio, speech, count)

    def batch_stats(self) -> dict[str, BatchStats]:
        """How concurrent calls shared each model's forwards (pipeline/batching.py)."""
        return {name: batcher.stats for name, batcher in self._backend.batchers.items()}


# --- offline: resemblyzer encoder + spectral clustering ---------------------------------------


class SpeakerEncoder:
    """resemblyzer's speaker encoder (weights in its wheel): mel frames -> embeddings. Calls
    from concurrent requests share forwards through one `ForwardBatcher`."""

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


def load_speaker_encoder(config: DiarizeConfig, placement: Placement) -> SpeakerEncoder:
    return SpeakerEncoder(config, placement)


class _EncoderBackend:
    def __init__(self, config: DiarizeConfig, placement: Placement):
        self.config = config
        self.encoder = load_speaker_encoder(config, placement)
        self.batcher = self.encoder.batcher
        self.batchers = {"encoder": self.batcher}

    def diarize(self, audio: Audio, speech, count: SpeakerCount) -> list[Turn]:
        low, high = count.bounds()
        if speech is None:
            speech = [(0.0, audio.duration)]
        speech = [(s, e) for s, e in speech if e - s >= 0.2]
        if not speech:
            return []
        windows = _windows(speech, audio.duration, self.config.hop_seconds)
        embeddings = self._embed(audio, windows)
        labels = cluster(embeddings, low, high, self.config.keep_fraction)
        # Turns join same-speaker spans across short gaps: cut them back to the speech found.
        return clip_to_speech(_turns(speech, windows, labels, min_speakers=low), speech)

    def _embed(self, audio: Audio, windows: list[tuple[float, float, float, float]]) -> np.ndarray:
        mel = self.encoder.mel(audio)
        if len(mel) < WINDOW_FRAMES:
            mel = np.pad(mel, ((0, WINDOW_FRAMES - len(mel)), (0, 0)))
        starts = [min(max(0, int(round(w[0] / FRAME_SECONDS))), len(mel) - WINDOW_FRAMES) for w in windows]
        batch = np.stack([mel[s : s + WINDOW_FRAMES] for s in starts])
        return np.concatenate([self.encoder(batch[i : i + EMBED_ROWS]) for i in range(0, len(batch), EMBED_ROWS)])


def _windows(speech, duration: float, hop: float) -> list[tuple[float, float, float, float]]:
    """(window start, window end, owned-from, owned-to) per embedding window: 1.6 s windows
    stepping `hop` through each speech region; each owns the span nearest its centre."""
    width = WINDOW_FRAMES * FRAME_SECONDS
    windows = []
    for start, end in speech:
        if end - start <= width:
            centre = (start + end) / 2
            w0 = min(max(0.0, centre - width / 2), max(0.0, duration - width))
            windows.append((w0, w0 + width, start, end))
            continue
        n = int(np.ceil((end - start - width) / hop)) + 1
        starts = np.linspace(start, end - width, n)
        centres = starts + width / 2
        bounds = np.concatenate([[start], (centres[1:] + centres[:-1]) / 2, [end]])
        for k, w0 in enumerate(starts):
            windows.append((float(w0), float(w0 + width), float(bounds[k]), float(bounds[k + 1])))
    return windows


def cluster(embeddings: np.ndarray, low: int, high: int, keep_fraction: float = 0.5) -> np.ndarray:
    """Spectral clustering of L2-normalised embeddings; k from the eigengap within [low, high]."""
    from sklearn.cluster import KMeans

    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=int)
    high = min(high, n)
    low = min(low, high)
    if high <= 1:
        return np.zeros(n, dtype=int)
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    affinity = _pruned_affinity(x @ x.T, keep_fraction)
    degree = affinity.sum(axis=1)
    inv_sqrt = 1.0 / np.sqrt(np.maximum(degree, 1e-10))
    normalized = affinity * inv_sqrt[:, None] * inv_sqrt[None, :]
    eigenvalues, eigenvectors = np.linalg.eigh(normalized)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    if low == high:
        k = low
    else:
        # The gap after the k-th eigenvalue needs a (k+1)-th: estimate k <= n - 1 (never one
        # speaker per window), else the slices differ in length when there are <= high windows.
        top = min(high, n - 1)
        gaps = eigenvalues[low - 1 : top] - eigenvalues[low : top + 1]
        k = low + int(np.argmax(gaps))
    k = max(k, 2) if low >= 2 else k
    if k == 1:
        return np.zeros(n, dtype=int)
    spectral = eigenvectors[:, :k]
    spectral = spectral / np.maximum(np.linalg.norm(spectral, axis=1, keepdims=True), 1e-10)
    labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(spectral)
    return _relabel_by_first_appearance(labels)


def _pruned_affinity(similarity: np.ndarray, keep_fraction: float) -> np.ndarray:
    """Keep each row's strongest links (p-pruning), symmetrise: sharper cluster structure.
    At least 10 links a row, so short files do not fall apart into disconnected pieces."""
    n = len(similarity)
    keep = min(n, max(10, int(np.ceil(keep_fraction * n))))
    affinity = np.zeros_like(similarity)
    top = np.argsort(-similarity, axis=1)[:, :keep]
    rows = np.arange(n)[:, None]
    affinity[rows, top] = np.clip(similarity[rows, top], 0.0, None)
    return (affinity + affinity.T) / 2


def _relabel_by_first_appearance(labels: np.ndarray) -> np.ndarray:
    order: dict[int, int] = {}
    for label in labels:
        order.setdefault(int(label), len(order))
    return np.array([order[int(label)] for label in labels], dtype=int)


def _turns(
    speech, windows, labels: np.ndarray, min_turn: float = 0.5, bridge: float = 1.0, min_speakers: int = 1
) -> list[Turn]:
    """Windows' owned spans -> turns: majority-smoothed within each region, merged, and turns
    shorter than `min_turn` given to the longer neighbour. Neither step takes the number of
    speakers below `min_speakers` (the lower bound given, capped at the clusters found): a
    speaker that would vanish keeps its windows through smoothing and its longest turn."""
    floor = min(min_speakers, len(np.unique(labels)))
    labels = _smooth(labels, windows, floor=floor)
    spans = [(w[2], w[3], int(label)) for w, label in zip(windows, labels)]
    merged: list[list] = []
    for start, end, label in spans:
        if merged and merged[-1][2] == label and start - merged[-1][1] < bridge:
            merged[-1][1] = end
        else:
            merged.append([start, end, label])
    changed = True
    while changed and len(merged) > 1:
        changed = False
        for i, (start, end, label) in enumerate(merged):
            if end - start >= min_turn:
                continue
            if len({t[2] for t in merged}) <= floor and i == _longest_turn(merged, label):
                continue
            neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(merged)]
            j = max(neighbours, key=lambda j: merged[j][1] - merged[j][0])
            merged[i][2] = merged[j][2]
            merged = _coalesce(merged)
            changed = True
            break
    return [Turn(round(s, 3), round(e, 3), f"SPEAKER_{label:02d}") for s, e, label in merged]


def clip_to_speech(turns: list[Turn], speech) -> list[Turn]:
    """Each turn cut to the VAD's speech regions (a turn never covers a rejected silence)."""
    out = []
    for turn in turns:
        for start, end in speech:
            lo, hi = max(turn.start, start), min(turn.end, end)
            if hi - lo >= 0.02:
                out.append(Turn(round(lo, 3), round(hi, 3), turn.speaker))
    return sorted(out, key=lambda t: (t.start, t.end, t.speaker))


def _longest_turn(turns: list[list], label: int) -> int:
    return max((j for j, t in enumerate(turns) if t[2] == label), key=lambda j: turns[j][1] - turns[j][0])


def _smooth(labels: np.ndarray, windows, width: int = 5, floor: int = 1) -> np.ndarray:
    out = labels.copy()
    half = width // 2
    for i in range(len(labels)):
        lo, hi = max(0, i - half), min(len(labels), i + half + 1)
        # only smooth over windows of the same speech region (contiguous owned spans)
        neighbourhood = [labels[j] for j in range(lo, hi) if abs(windows[j][2] - windows[i][2]) < 0.8 * half + 1.6]
        values, counts = np.unique(neighbourhood, return_counts=True)
        if counts.max() > len(neighbourhood) // 2:
            out[i] = values[np.argmax(counts)]
    # Majority voting erases a cluster of scattered windows: while that leaves fewer than
    # `floor` labels, give the largest erased cluster its windows back.
    while len(np.unique(out)) < floor:
        erased = [label for label in np.unique(labels) if not np.any(out == label)]
        label = max(erased, key=lambda label: int(np.sum(labels == label)))
        out[labels == label] = label
    return out


def _coalesce(turns: list[list]) -> list[list]:
    out: list[list] = []
    for start, end, label in turns:
        if out and out[-1][2] == label:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end, label])
    return out


# --- pyannote (production) ---------------------------------------------------------------------


class _PyannoteBackend:
    def __init__(self, model: str, device: str):
        from whisperx.diarize import DiarizationPipeline

        token = os.environ.get("HF_TOKEN")
        local = Path(model).expanduser()
        if local.is_dir() and not (local / "config.yaml").is_file():
            raise ModelNotFound(f"{local} has no config.yaml: not a pyannote pipeline directory")
        if not local.is_dir() and not downloads_allowed() and not _in_hf_cache(model):
            raise ModelNotFound(
                f"diarization model {model!r} is not in the Hugging Face cache and downloads are off: "
                f"set --diarize-model / diarize.model to a local pyannote pipeline directory, or set "
                f"WXS_ALLOW_DOWNLOAD=1 and HF_TOKEN (the model is gated)"
            )
        try:
            self.pipeline = DiarizationPipeline(
                model_name=str(local) if local.is_dir() else model, token=token, device=device
            )
        except Exception as exc:
            raise ModelNotFound(f"cannot load pyannote pipeline {model!r}: {exc}") from exc
        self.batchers = share_pyannote_forwards(self.pipeline.model)

    def diarize(self, audio: Audio, speech, count: SpeakerCount) -> list[Turn]:
        count.bounds()
        frame = self.pipeline(
            audio.samples,
            num_speakers=count.num_speakers,
            min_speakers=count.min_speakers,
            max_speakers=count.max_speakers,
        )
        turns = [Turn(round(float(r.start), 3), round(float(r.end), 3), str(r.speaker)) for r in frame.itertuples()]
        return sorted(turns, key=lambda t: (t.start, t.end))


def share_pyannote_forwards(pipeline) -> dict[str, ForwardBatcher]:
    """Let concurrent runs of a pyannote speaker-diarization pipeline share its segmentation
    and embedding forwards (every chunk and every local speaker's masked chunk is a row of
    its own), up to two callers' batches each, as the VAD does. Changes `pipeline` in place;
    a pipeline without those parts runs as it is."""
    batchers = {}
    segmentation = getattr(pipeline, "_segmentation", None)
    if segmentation is not None and hasattr(segmentation, "infer"):
        rows = 2 * max(1, getattr(pipeline, "segmentation_batch_size", 32))
        batchers["segmentation"] = segmentation.infer = ForwardBatcher(segmentation.infer, rows)
    embedding = getattr(pipeline, "_embedding", None)
    if embedding is not None:
        rows = 2 * max(1, getattr(pipeline, "embedding_batch_size", 32))
        pipeline._embedding = _SharedEmbedding(embedding, rows)
        batchers["embedding"] = pipeline._embedding.batcher
    if not batchers:
        log.warning("pyannote pipeline %s: no segmentation/embedding to batch across requests", type(pipeline))
    return batchers


class _SharedEmbedding:
    """pyannote's speaker embedding (`embedding(waveforms, masks=...)`), its calls batched
    across concurrent diarizations; everything else is the wrapped object's."""

    def __init__(self, embedding, max_rows: int):
        self._embedding = embedding
        self.batcher = ForwardBatcher(lambda waveforms, masks: embedding(waveforms, masks=masks), max_rows)

    def __call__(self, waveforms, masks=None):
        if masks is None:
            return self._embedding(waveforms)
        return self.batcher(waveforms, masks)

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "_embedding":  # copy/pickle probe before __init__ ran
            raise AttributeError(name)
        return getattr(self._embedding, name)


def _in_hf_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id, local_files_only=True)
        return True
    except Exception:
        return False
