"""How many chunks one ASR batch may hold: from the GPU memory a replica was given, and
smaller after a batch ran out of it.

Pure: the figures come in as numbers (cluster/gpu.py reads them, the Transcriber replica
measures the per-chunk cost with a probe batch at start-up), so the rules are tested without
a GPU. The service's Transcriber uses them; the batch job's ASR actors do not yet (their batch
size is AsrConfig.batch_size, and an out-of-memory there is not split).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Kept free of the share: the probe decodes low noise (few tokens, so short self-attention
# caches; speech decodes up to 448 tokens x beam), CTranslate2's caching allocator rounds
# blocks up to its size bins and keeps freed ones, and torch (the word-time alignment) keeps
# its own cache; a batch sized to the last byte would run out of memory on real speech.
DEFAULT_HEADROOM = 0.15


@dataclass(frozen=True)
class MemoryFigures:
    """What a GPU batch size was computed from (reported as-is in /healthz)."""

    total_bytes: int  # the device's memory
    share: float  # fraction of the device this replica reserved (Ray's num_gpus)
    resident_bytes: int  # this replica's own, batch or not: CUDA contexts, weights, workspaces
    free_bytes: int  # free on the device before this replica loaded: what neighbours leave it
    per_chunk_bytes: int  # measured: peak growth from a probe batch of 1 to one of N, per chunk
    headroom: float = DEFAULT_HEADROOM  # fraction of the share never planned for


def power_of_two_floor(n: int) -> int:
    """The largest power of two <= n (n >= 1)."""
    return 1 << (max(1, n).bit_length() - 1)


def memory_cap(figures: MemoryFigures) -> int:
    """Chunks per batch that fit the share, rounded down to a power of two; at least 1.

    The room is the share, or what neighbours left free if less (one on a shared GPU may
    hold more than its share), less what the replica holds anyway; the headroom comes off
    that. Rounded down to a power of two: CTranslate2 pads every row of a batch to its
    longest (each decode step runs batch x beam rows up to the longest transcript), so the
    probe's per-chunk figure is an estimate and the floor gives it slack beyond the
    headroom; float16 GEMMs favour row counts in multiples of 8; and halving after an
    out-of-memory then tries exact halves down to 1. One chunk always gets a try, even when
    nothing seems to fit.
    """
    if figures.per_chunk_bytes <= 0:
        raise ValueError("per_chunk_bytes must be positive")
    share_bytes = figures.total_bytes * figures.share
    room = min(share_bytes, figures.free_bytes) - figures.resident_bytes - figures.headroom * share_bytes
    return power_of_two_floor(int(room // figures.per_chunk_bytes)) if room >= figures.per_chunk_bytes else 1


@dataclass(frozen=True)
class BatchLimit:
    """The replica's max_batch_size: the configured one (user_config, the ceiling), capped
    by GPU memory (None on CPU or where memory is unknown) and by the largest batch that
    still decoded after an out-of-memory (None until one happens)."""

    configured: int
    memory: int | None = None
    oom: int | None = None

    @property
    def size(self) -> int:
        return max(1, min(n for n in (self.configured, self.memory, self.oom) if n is not None))

    @property
    def source(self) -> str:
        """Which limit binds: "config", "gpu-memory" or "oom" (ties go to the configured one)."""
        if self.size == self.configured:
            return "config"
        return "oom" if self.oom is not None and self.size == self.oom else "gpu-memory"

    def after_oom(self, worked: int) -> BatchLimit:
        """Lowered to the batch that decoded (to a power of two, as the memory cap); never raised."""
        cap = power_of_two_floor(worked)
        return BatchLimit(self.configured, self.memory, cap if self.oom is None else min(self.oom, cap))


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA out-of-memory from CTranslate2 (a RuntimeError "... out of memory") or torch
    (torch.cuda.OutOfMemoryError, recognised by name so that this needs no torch)."""
    if any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@dataclass(frozen=True)
class Split:
    """What `decode_in_halves` did: results in input order, the batches that ran out of
    memory and were split, and the largest batch that decoded after one (None: no OOM)."""

    results: list
    splits: int
    worked: int | None


def decode_in_halves(
    decode: Callable[[list[T]], Sequence[R]],
    items: Sequence[T],
    is_oom: Callable[[BaseException], bool] = is_out_of_memory,
) -> Split:
    """`decode(items)`, and on out-of-memory the two halves, recursively down to one item.

    Once a size has failed, lists that large are split before trying (the remainder of a
    batch does not fail once more to learn the same thing). A single item that still runs
    out of memory raises that error; other errors propagate unchanged.
    """
    state = {"failed": len(items) + 1, "splits": 0, "worked": None}

    def run(part: list[T]) -> list[R]:
        if len(part) >= state["failed"] and len(part) > 1:
            return halves(part)
        try:
            out = list(decode(part))
        except Exception as exc:
            if len(part) == 1 or not is_oom(exc):
                raise
            state["failed"] = len(part)
            state["splits"] += 1
            return halves(part)
        if len(out) != len(part):
            raise ValueError(f"decode returned {len(out)} results for {len(part)} items")
        if state["splits"]:
            state["worked"] = max(state["worked"] or 0, len(part))
        return out

    def largest_below_failure() -> int | None:
        # a size that decoded early in the split and failed later in it is not one that works
        worked = state["worked"]
        return None if worked is None else min(worked, state["failed"] - 1)

    def halves(part: list[T]) -> list[R]:
        mid = len(part) // 2
        return run(part[:mid]) + run(part[mid:])

    results = run(list(items)) if items else []
    return Split(results, state["splits"], largest_below_failure())
