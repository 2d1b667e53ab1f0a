"""The offline `windows` method (the first default: cheaper, one speaker at a time): the speaker
encoder on 1.6 s windows over the speech, clustered spectrally (the count from the eigengap
when not given), then smoothed into turns."""

from __future__ import annotations

import numpy as np

from pipeline.diarize.clustering import cluster
from pipeline.diarize.config import DiarizeConfig, SpeakerCount
from pipeline.diarize.encoder import EMBED_ROWS, FRAME_SECONDS, WINDOW_FRAMES, SpeakerEncoder
from pipeline.intervals import Regions, clip_turns
from pipeline.placement import Placement
from pipeline.schema import Audio, Turn, ms

MIN_REGION_SECONDS = 0.2  # shorter speech regions get no window

# (window start, window end, owned-from, owned-to): the encoder reads the window; its speaker
# owns the span between the midpoints to its neighbours.
Window = tuple[float, float, float, float]


class WindowsBackend:
    def __init__(self, config: DiarizeConfig, placement: Placement):
        self.config = config
        self.encoder = SpeakerEncoder(config, placement)
        self.batchers = {"encoder": self.encoder.batcher}

    def diarize(self, audio: Audio, speech, count: SpeakerCount) -> list[Turn]:
        low, high = count.bounds()
        if speech is None:
            speech = [(0.0, audio.duration)]
        speech = [(s, e) for s, e in speech if e - s >= MIN_REGION_SECONDS]
        if not speech:
            return []
        windows = embedding_windows(speech, audio.duration, self.config.hop_seconds)
        embeddings = self._embed(audio, windows)
        labels = cluster(embeddings, low, high, self.config.keep_fraction)
        # Turns join same-speaker spans across short gaps: cut them back to the speech found.
        return clip_turns(smoothed_turns(windows, labels, min_speakers=low), Regions.of(speech))

    def _embed(self, audio: Audio, windows: list[Window]) -> np.ndarray:
        mel = self.encoder.mel(audio)
        if len(mel) < WINDOW_FRAMES:
            mel = np.pad(mel, ((0, WINDOW_FRAMES - len(mel)), (0, 0)))
        starts = [min(max(0, int(round(w[0] / FRAME_SECONDS))), len(mel) - WINDOW_FRAMES) for w in windows]
        batch = np.stack([mel[s : s + WINDOW_FRAMES] for s in starts])
        return np.concatenate([self.encoder(batch[i : i + EMBED_ROWS]) for i in range(0, len(batch), EMBED_ROWS)])


def embedding_windows(speech, duration: float, hop: float) -> list[Window]:
    """1.6 s windows stepping `hop` through each speech region; each owns the span nearest its centre."""
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


def smoothed_turns(
    windows: list[Window], labels: np.ndarray, min_turn: float = 0.5, bridge: float = 1.0, min_speakers: int = 1
) -> list[Turn]:
    """Windows' owned spans -> turns: majority-smoothed per region, merged, turns under `min_turn`
    given to the longer neighbour; never below `min_speakers` (capped at the clusters found)."""
    # A speaker that would vanish keeps its windows through smoothing and its longest turn.
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
    return [Turn(ms(s), ms(e), f"SPEAKER_{label:02d}") for s, e, label in merged]


def _longest_turn(turns: list[list], label: int) -> int:
    return max((j for j, t in enumerate(turns) if t[2] == label), key=lambda j: turns[j][1] - turns[j][0])


def _smooth(labels: np.ndarray, windows: list[Window], width: int = 5, floor: int = 1) -> np.ndarray:
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
