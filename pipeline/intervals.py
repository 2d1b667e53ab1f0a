"""Time regions, (start, end) in seconds, queried by bisection: `Regions` (disjoint: speech) and
`OverlapIndex` (may overlap: speaker turns, split into layers of disjoint ones)."""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence

import numpy as np

from pipeline.schema import Turn, ms, normalized_turns

Region = tuple[float, float]

# The shortest piece a cut keeps (seconds): shorter ones are slivers left where two
# frame grids (10 ms mel, 17 ms segmentation) meet, not speech.
EPSILON = 0.02


def overlap(a: Region, b: Region) -> float:
    """How long a and b share (0 when they are apart)."""
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


class Regions:
    """Regions in time order, none overlapping another (they may touch)."""

    def __init__(self, spans: Sequence[Region] = ()):
        """`spans` already in order and disjoint (see `Regions.of`)."""
        self.spans = tuple(spans)
        self.starts = [s for s, _ in self.spans]
        self.ends = [e for _, e in self.spans]

    @classmethod
    def of(cls, pairs: Iterable[Sequence[float]]) -> Regions:
        """Any (start, end) pairs: sorted, empty ones dropped, overlapping ones joined."""
        spans: list[list[float]] = []
        for s, e in sorted((float(s), float(e)) for s, e in pairs if e > s):
            if spans and s < spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], e)
            else:
                spans.append([s, e])
        return cls([(s, e) for s, e in spans])

    def overlapping(self, start: float, end: float) -> range:
        """Indices of the regions sharing some time with [start, end]."""
        if not start < end:
            return range(0)
        return range(bisect_right(self.ends, start), bisect_left(self.starts, end))

    def holding(self, time: float, closed: bool = False) -> int | None:
        """The first region with start <= time < end (<= end when `closed`)."""
        i = (bisect_left if closed else bisect_right)(self.ends, time)
        return i if i < len(self.spans) and self.starts[i] <= time else None

    def clip(self, start: float, end: float, min_seconds: float = 0.0) -> list[Region]:
        """The parts of the regions inside [start, end], those of at least `min_seconds`."""
        pieces = [(max(start, self.starts[i]), min(end, self.ends[i])) for i in self.overlapping(start, end)]
        return [(s, e) for s, e in pieces if e > s and e - s >= min_seconds]

    def within(self, start: float, end: float) -> tuple[Region, ...]:
        """`clip`, rounded to the millisecond."""
        return tuple((ms(s), ms(e)) for s, e in self.clip(start, end))

    @property
    def seconds(self) -> float:
        return sum(e - s for s, e in self.spans)

    def minus(self, other: Regions) -> Regions:
        """The time in these regions that `other` does not cover."""
        out = []
        for start, end in self.spans:
            cursor = start
            for i in other.overlapping(start, end):
                if other.starts[i] > cursor:
                    out.append((cursor, other.starts[i]))
                cursor = max(cursor, other.ends[i])
            if cursor < end:
                out.append((cursor, end))
        return Regions(out)

    def inside(self, times: np.ndarray) -> np.ndarray:
        """Which of `times` some region holds (start <= time < end)."""
        if not self.spans:
            return np.zeros(np.shape(times), dtype=bool)
        k = np.searchsorted(np.array(self.starts), times, side="right") - 1
        return (k >= 0) & (times < np.array(self.ends)[np.clip(k, 0, None)])


def clip_turns(turns: Iterable[Turn], speech: Regions) -> list[Turn]:
    """Each turn cut to the speech (a turn never covers a silence the VAD rejected)."""
    pieces = [Turn(s, e, t.speaker) for t in turns for s, e in speech.clip(t.start, t.end, EPSILON)]
    return normalized_turns(pieces)


class OverlapIndex:
    """Regions that may overlap one another, indexed in the order given. Layers of disjoint
    regions, filled in start order (as many as regions overlap at once), turn every
    query into one bisection per layer. Ties go to the earliest region, as a scan would."""

    def __init__(self, regions: Sequence[Region]):
        self.regions = [(float(s), float(e)) for s, e in regions]
        layers: list[tuple[list[Region], list[int]]] = []
        free: list[tuple[float, int]] = []  # (where a layer ends, layer): the earliest first
        for i in sorted(range(len(self.regions)), key=lambda i: (*self.regions[i], i)):
            s, e = self.regions[i]
            if e < s:
                continue  # overlaps nothing; `nearest` scans these
            if free and free[0][0] <= s:
                _, k = heapq.heappop(free)
            else:
                k = len(layers)
                layers.append(([], []))
            layers[k][0].append((s, e))
            layers[k][1].append(i)
            heapq.heappush(free, (e, k))
        self._layers = [(Regions(spans), ids) for spans, ids in layers]
        self._inverted = [i for i, (s, e) in enumerate(self.regions) if e < s]

    def most_overlapping(self, start: float, end: float) -> int | None:
        """The region sharing the most time with [start, end]; None when none shares any."""
        found = [  # (-overlap, index): the most overlap, then the earliest
            (-shared, ids[k])
            for layer, ids in self._layers
            for k in layer.overlapping(start, end)
            if (shared := overlap(layer.spans[k], (start, end))) > 0  # a zero-length region shares nothing
        ]
        return min(found)[1] if found else None

    def nearest(self, time: float) -> int | None:
        """The region closest to `time` (distance 0 inside it)."""

        def distance(i: int) -> float:
            s, e = self.regions[i]
            return max(s - time, time - e, 0.0)

        found = [(distance(i), i) for i in self._inverted]
        for layer, ids in self._layers:
            # Distance falls up to the first region ending at or after `time`, then rises:
            # the closest are the regions tied with it or with the one before.
            p = bisect_left(layer.ends, time)
            for first, step in ((p - 1, -1), (p, 1)):
                k = first
                while 0 <= k < len(ids) and distance(ids[k]) == distance(ids[first]):
                    found.append((distance(ids[k]), ids[k]))
                    k += step
        return min(found)[1] if found else None
