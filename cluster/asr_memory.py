"""The GPU memory an ASR batch costs, measured once at start-up with probe batches.

mem(batch) is taken as fixed + batch x per_chunk (every Whisper chunk is padded to 30 s, so
chunks cost alike): a batch of 1 and a batch of N, both after a warm-up decode, give the
two points. The warm-up takes the one-time costs (CUDA contexts, cuBLAS workspaces, the
allocators' first blocks) out of the difference, which would otherwise be charged per chunk.

Peaks are polled: CTranslate2's caching allocator hands blocks beyond its cache limit back
to the driver when a batch ends, and a memory read after the batch would miss them. A poll
can still miss a spike shorter than its interval. The device-wide `used` includes any
neighbour allocating at the same time, which skews the difference of the two peaks either way
(a neighbour loading during the batch of 1 makes the per-chunk figure too small). The headroom
in pipeline/batch_size.py and halving on out-of-memory cover both; a failed probe leaves the
configured size in force.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from cluster.gpu import GpuMemory, MemoryReader
from pipeline.asr import N_SAMPLES, DecodeOptions
from pipeline.batch_size import DEFAULT_HEADROOM, MemoryFigures
from pipeline.placement import Placement
from pipeline.schema import Chunk, ChunkResult

log = logging.getLogger(__name__)

PROBE_CHUNKS = 4
POLL_S = 0.002  # an NVML memory read costs tens of microseconds


class Decoder(Protocol):
    def transcribe_chunks(self, chunks: Sequence[Chunk], options: DecodeOptions) -> list[ChunkResult]: ...


class PeakUsed:
    """The highest device `used` seen while the block runs (a thread polls the reader)."""

    def __init__(self, reader: MemoryReader, index: int, interval_s: float = POLL_S):
        self.reader, self.index, self.interval_s = reader, index, interval_s
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="gpu-peak", daemon=True)

    def _sample(self) -> None:
        memory = self.reader.read(self.index)
        if memory is not None and memory.used_bytes is not None:
            self.peak = max(self.peak or 0, memory.used_bytes)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakUsed:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def probe_chunks(n: int) -> list[Chunk]:
    """n chunks of 30 s of low noise (fixed seed): the longest a chunk gets, so the most
    encoder memory; it decodes to few tokens, which the headroom allows for."""
    rng = np.random.default_rng(0)
    return [Chunk("memory-probe", i, 0.0, 30.0, rng.normal(0.0, 0.003, N_SAMPLES).astype(np.float32)) for i in range(n)]


def measure(
    engine: Decoder,
    reader: MemoryReader,
    placement: Placement,
    before_load: GpuMemory,
    n: int = PROBE_CHUNKS,
    headroom: float = DEFAULT_HEADROOM,
    init_torch: bool = True,
    model_ids: Sequence[str] = ("",),
) -> MemoryFigures | None:
    """The figures a batch size is chosen from, or None where they cannot be measured (memory
    unreadable, or no growth from 1 to n chunks). `before_load` was read before the model
    loaded: what it leaves free is what neighbours on the device leave this replica.
    `model_ids`: each model `engine` holds ("": its only or first one)."""
    if n < 2:
        raise ValueError("the probe needs at least 2 chunks")
    if before_load.total_bytes is None or before_load.free_bytes is None:
        return None
    if init_torch:  # the word-time alignment uses torch on the GPU: its context is fixed cost
        import torch

        torch.zeros(1, device=placement.torch_device)
    chunks = probe_chunks(n)
    per_chunk, resident = 0, 0
    # Every model held batches alone (batches never mix models): the largest per-chunk cost caps them all.
    for model_id in model_ids:
        options = DecodeOptions(language="en", word_timestamps=True, model=model_id)
        engine.transcribe_chunks(chunks[:1], options)  # warm-up
        peaks = []
        for size in (1, n):
            with PeakUsed(reader, placement.gpu_index) as peak:
                engine.transcribe_chunks(chunks[:size], options)
            if peak.peak is None:
                return None
            peaks.append(peak.peak)
        grown = (peaks[1] - peaks[0]) // (n - 1)
        if grown <= 0:
            log.warning(
                "GPU memory probe (%s): no growth from 1 to %d chunks (%s); batch size not capped", model_id, n, peaks
            )
            return None
        per_chunk = max(per_chunk, grown)
        # every model is loaded already: each batch of 1 sees all their weights
        resident = max(resident, peaks[0] - grown - (before_load.used_bytes or 0))
    return MemoryFigures(
        total_bytes=before_load.total_bytes,
        share=placement.gpu_share,
        resident_bytes=max(0, resident),
        free_bytes=before_load.free_bytes,
        per_chunk_bytes=per_chunk,
        headroom=headroom,
    )
