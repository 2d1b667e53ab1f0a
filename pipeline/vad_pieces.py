"""pyannote's sliding-window scoring of one audio, done piece by piece: the windows of the whole
file's grid, scored a few at a time, and after each piece the frames no later window can change.
Those frames equal the whole pass's (`Inference.slide`): same windows, batches, padding and
aggregation, so a stream's chunks are the unstreamed request's."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.schema import SAMPLE_RATE


@dataclass(frozen=True)
class ScoredPrefix:
    scores: object  # pyannote SlidingWindowFeature: the final frames so far
    end_seconds: float  # the middle of the last final frame (what the binarizers see last)
    complete: bool  # every window scored: `scores` is the whole pass's output


class WindowGrid:
    """The windows pyannote's `Inference` slides over `waveform` (1, samples)."""

    def __init__(self, inference, waveform):
        self.inference, self.waveform = inference, waveform
        self.window = inference.model.audio.get_num_samples(inference.duration)
        self.step = round(inference.step * SAMPLE_RATE)
        self.samples = waveform.shape[1]
        # the same complete windows and zero-padded last one as Inference.slide
        self.complete_windows = (self.samples - self.window) // self.step + 1 if self.samples >= self.window else 0
        self.has_last = self.samples < self.window or (self.samples - self.window) % self.step > 0
        self.total = self.complete_windows + self.has_last

    def _rows(self, first: int, end: int):
        import torch

        rows = []
        for i in range(first, end):
            if i < self.complete_windows:
                rows.append(self.waveform[:, i * self.step : i * self.step + self.window])
            else:
                last = self.waveform[:, self.complete_windows * self.step :]
                rows.append(torch.nn.functional.pad(last, (0, self.window - last.shape[1])))
        return torch.stack(rows)

    def prefixes(self, first_windows: int) -> Iterator[ScoredPrefix]:
        """Score the windows in pieces of `first_windows`, then twice as many each time (the
        aggregation reruns over the prefix: doubling keeps that a small part of the scoring)."""
        from pyannote.core import Segment, SlidingWindow, SlidingWindowFeature

        inf = self.inference
        outputs: np.ndarray | None = None
        chunk_grid = SlidingWindow(start=0.0, duration=inf.duration, step=inf.step)
        frames = inf.model.receptive_field
        # whole batches per piece: the same batches as the whole pass
        done, piece = 0, max(1, -(-first_windows // inf.batch_size)) * inf.batch_size
        while done < self.total:
            end = min(self.total, done + piece)
            # Inference.slide's batches: complete windows batch_size at a time, the padded last alone
            batches = [
                (b, min(b + inf.batch_size, end, self.complete_windows))
                for b in range(done, min(end, self.complete_windows), inf.batch_size)
            ]
            if end == self.total and self.has_last:
                batches.append((self.complete_windows, self.total))
            for first, last in batches:
                scored = inf.pre_aggregation_hook(inf.infer(self._rows(first, last)))
                if outputs is None:
                    outputs = np.full((self.total, *scored.shape[1:]), np.nan, dtype=scored.dtype)
                outputs[first:last] = scored
            done, piece = end, piece * 2
            aggregated = inf.aggregate(
                SlidingWindowFeature(outputs[:done], chunk_grid),
                frames,
                warm_up=inf.warm_up,
                hamming=True,
                missing=0.0,
            )
            complete = done == self.total
            if complete:
                if self.has_last:  # Inference.slide's crop of the last window's padding
                    aggregated.data = aggregated.crop(Segment(0.0, self.samples / SAMPLE_RATE), mode="loose")
                final = len(aggregated.data)
            else:  # frames past where the next window starts still gain scores from it
                final = min(len(aggregated.data), frames.closest_frame(done * inf.step + 0.5 * frames.duration))
            prefix = SlidingWindowFeature(aggregated.data[:final], aggregated.sliding_window)
            end_seconds = aggregated.sliding_window[final - 1].middle if final else 0.0
            yield ScoredPrefix(prefix, end_seconds, complete)
