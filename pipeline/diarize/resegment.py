"""Speaker labels refined by the speaker encoder, after reconstruction.

The segmentation scores local speakers per 5 s chunk. When it gives one slot to two far-field
voices it cannot tell apart inside a chunk, that slot gets one embedding and the clustering
one speaker for the whole stretch, across the change of voice (dev00, an AMI meeting: 23 % of
its speech confused). Here the encoder embeds 1.5 s windows every 0.25 s where one speaker is
talking, each speaker's centroid is the mean of the windows its turns hold, and each window
votes for its most similar centroid; a frame spoken by one speaker takes its windows' majority.
Overlapped frames keep their speakers, and no speaker is added or removed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.diarize.clustering import unit_rows
from pipeline.diarize.encoder import EMBED_ROWS, FRAME_SECONDS
from pipeline.schema import Turn

WINDOW_FRAMES = 150  # 1.5 s windows (hop 0.25 s): 1.0-1.5 s and 0.12-0.5 s hops measured alike
HOP_FRAMES = 25
# A window is embedded when this share of its frames have one speaker (sample.wav's DER at
# collar 0.25: 5.3 % at 0.8, 2.4 % at 0.9, 3.6 % at 1.0; the other files moved less).
SINGLE_SHARE = 0.9


def resegment(turns: list[Turn], mel: np.ndarray, encode: Callable[[np.ndarray], np.ndarray]) -> list[Turn]:
    """`turns` relabelled frame by frame where one speaker talks; `mel`: the audio's encoder
    frames (10 ms each); `encode`: (windows, frames, mels) -> embeddings."""
    labels = sorted({t.speaker for t in turns})
    if len(labels) < 2 or len(mel) < WINDOW_FRAMES:
        return turns
    frames = len(mel)
    cover = np.zeros((frames, len(labels)), dtype=bool)
    for turn in turns:
        cover[_frame(turn.start) : _frame(turn.end), labels.index(turn.speaker)] = True
    single = cover.sum(axis=1) == 1
    starts = [
        s
        for s in range(0, frames - WINDOW_FRAMES + 1, HOP_FRAMES)
        if single[s : s + WINDOW_FRAMES].mean() >= SINGLE_SHARE
    ]
    if not starts:
        return turns
    owners = np.array(
        [np.argmax(cover[s : s + WINDOW_FRAMES][single[s : s + WINDOW_FRAMES]].sum(axis=0)) for s in starts]
    )
    embeddings = np.concatenate(
        [
            encode(np.stack([mel[s : s + WINDOW_FRAMES] for s in starts[i : i + EMBED_ROWS]]).astype(np.float32))
            for i in range(0, len(starts), EMBED_ROWS)
        ]
    )
    embeddings = unit_rows(embeddings)
    present = [j for j in range(len(labels)) if (owners == j).any()]
    if len(present) < 2:
        return turns
    centroids = unit_rows(np.stack([embeddings[owners == j].mean(axis=0) for j in present]))
    choice = np.array(present)[np.argmax(embeddings @ centroids.T, axis=1)]
    votes = np.zeros((frames, len(labels)))
    for start, label in zip(starts, choice):
        votes[start : start + WINDOW_FRAMES, label] += 1
    relabelled = np.where(single & (votes.sum(axis=1) > 0), votes.argmax(axis=1), -1)
    return _rebuilt(turns, labels, relabelled)


def _frame(seconds: float) -> int:
    return int(round(seconds / FRAME_SECONDS))


def _rebuilt(turns: list[Turn], labels: list[str], relabelled: np.ndarray) -> list[Turn]:
    """Each turn cut where its frames' labels change; touching pieces of one speaker joined."""
    pieces: list[Turn] = []
    for turn in turns:
        own = labels.index(turn.speaker)
        first, last = _frame(turn.start), min(_frame(turn.end), len(relabelled))
        if last <= first:
            pieces.append(turn)
            continue
        frame_labels = np.where(relabelled[first:last] >= 0, relabelled[first:last], own)
        changes = np.flatnonzero(np.diff(frame_labels)) + 1
        bounds = [first, *(first + changes).tolist(), last]
        for a, b in zip(bounds, bounds[1:]):
            start = turn.start if a == first else a * FRAME_SECONDS
            end = turn.end if b == last else b * FRAME_SECONDS
            pieces.append(Turn(round(start, 3), round(end, 3), labels[frame_labels[a - first]]))
    pieces.sort(key=lambda t: (t.start, t.end))
    joined: list[Turn] = []
    for piece in pieces:
        same = [i for i in range(len(joined) - 1, max(-1, len(joined) - 4), -1) if joined[i].speaker == piece.speaker]
        if same and joined[same[0]].end >= piece.start - 1e-6:
            i = same[0]
            joined[i] = Turn(joined[i].start, max(joined[i].end, piece.end), piece.speaker)
        else:
            joined.append(piece)
    return sorted(joined, key=lambda t: (t.start, t.end))
