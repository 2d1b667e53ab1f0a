"""Cross-request batching of a torch stage's forward passes (VAD windows of 5 s, speaker-encoder
windows of 1.6 s): rows of every waiting call with the same per-row shape are concatenated, run
as one model call and split back, so on a GPU many short requests fill a batch as a long one does.

No call waits for company: whichever caller finds the model free runs everything queued behind
it, so a lone request is never delayed. The models batched here score each row on its own, so a
row's output does not depend on its batch-mates (up to float rounding). A combined call that
fails (CUDA out of memory, say) is retried caller by caller, so one request's failure stays its own.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Forward = Callable[..., Any]


@dataclass
class BatchStats:
    """What the batcher did (bench_gpu and the tests read it)."""

    calls: int = 0  # forward calls made by callers
    forwards: int = 0  # model calls actually run
    rows: int = 0
    shared: int = 0  # model calls that served more than one caller
    max_callers: int = 0  # most callers served by one model call
    retried: int = 0  # combined calls that failed and were rerun caller by caller


@dataclass(eq=False)  # compared by identity: its args are arrays
class _Call:
    args: tuple
    rows: int
    key: tuple
    done: bool = False
    value: Any = None
    error: BaseException | None = None


class ForwardBatcher:
    """Wraps `forward(*tensors) -> output`, whose inputs and outputs are batched on dim 0
    (torch tensors or numpy arrays; an output may be a tuple of them). Thread-safe."""

    def __init__(self, forward: Forward, max_rows: int = 256):
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.forward = forward
        self.max_rows = max_rows
        self.stats = BatchStats()
        self._queue: deque[_Call] = deque()
        self._cond = threading.Condition()
        self._running = False

    def __call__(self, *args):
        rows = len(args[0])
        call = _Call(args, rows, tuple((tuple(a.shape[1:]), str(a.dtype)) for a in args))
        with self._cond:
            self.stats.calls += 1
            self._queue.append(call)
        while True:
            with self._cond:
                while self._running and not call.done:
                    self._cond.wait()
                if call.done:
                    break
                self._running = True  # this caller runs the model for everything queued
                group = self._take()
            try:
                self._run(group)
            except BaseException:  # interrupted: no member of this group may be left waiting
                for member in group:
                    if not member.done:
                        member.error, member.done = RuntimeError("the batch running this call was interrupted"), True
                raise
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()
        if call.error is not None:
            raise call.error
        return call.value

    def _take(self) -> list[_Call]:
        """The oldest call, and the calls after it of the same shape while rows fit (called
        under the lock; the rest stay queued in order)."""
        first = self._queue.popleft()
        group, rest, rows = [first], deque(), first.rows
        for call in self._queue:
            if call.key == first.key and rows + call.rows <= self.max_rows:
                group.append(call)
                rows += call.rows
            else:
                rest.append(call)
        self._queue = rest
        return group

    def _run(self, group: list[_Call]) -> None:
        self.stats.forwards += 1
        self.stats.rows += sum(c.rows for c in group)
        self.stats.max_callers = max(self.stats.max_callers, len(group))
        if len(group) == 1:
            _settle(group[0], lambda: self.forward(*group[0].args))
            return
        self.stats.shared += 1
        try:
            inputs = [_concat([c.args[i] for c in group]) for i in range(len(group[0].args))]
            output = self.forward(*inputs)
        except Exception:  # noqa: BLE001 - each caller alone: a failure stays its own
            self._each_alone(group)
            return
        if _row_count(output) != sum(c.rows for c in group):  # not row-wise after all
            self._each_alone(group)
            return
        offset = 0
        for call in group:
            call.value = _rows(output, offset, offset + call.rows)
            call.done = True
            offset += call.rows

    def _each_alone(self, group: list[_Call]) -> None:
        self.stats.retried += 1
        for call in group:
            _settle(call, lambda call=call: self.forward(*call.args))


def _settle(call: _Call, run: Callable[[], Any]) -> None:
    try:
        call.value = run()
    except Exception as exc:  # noqa: BLE001 - raised in the caller's own thread
        call.error = exc
    call.done = True


def _concat(parts: list):
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import torch

    return torch.cat(parts)


def _row_count(output) -> int | None:
    if isinstance(output, tuple | list):
        counts = {_row_count(o) for o in output}
        return counts.pop() if len(counts) == 1 else None
    return len(output)


def _rows(output, start: int, end: int):
    if isinstance(output, tuple | list):
        return type(output)(_rows(o, start, end) for o in output)
    return output[start:end]
