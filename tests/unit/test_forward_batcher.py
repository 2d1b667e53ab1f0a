"""ForwardBatcher: concurrent callers' rows share model calls, and each gets its own rows back."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from pipeline.batching import ForwardBatcher


class SlowModel:
    """Row-wise forward that holds the 'device' a while, so callers pile up behind it."""

    def __init__(self, seconds: float = 0.05):
        self.seconds = seconds
        self.batches: list[int] = []
        self.active = 0
        self.overlapped = False
        self._lock = threading.Lock()

    def __call__(self, x):
        with self._lock:
            self.active += 1
            self.overlapped |= self.active > 1
        try:
            if isinstance(x, np.ndarray) and np.isnan(x).any():
                raise RuntimeError("CUDA out of memory (a poisoned row)")
            self.batches.append(len(x))
            time.sleep(self.seconds)
            return x * 2 + 1
        finally:
            with self._lock:
                self.active -= 1


def _run_concurrently(batcher, inputs):
    start = threading.Barrier(len(inputs))

    def call(x):
        start.wait()
        return batcher(x)

    with ThreadPoolExecutor(len(inputs)) as pool:
        futures = [pool.submit(call, x) for x in inputs]
        # A deadlocked batcher fails the test instead of hanging it.
        return [f.exception(timeout=30) or f.result() for f in futures]


def _queue_behind_a_busy_model(forward, max_rows, inputs):
    """Holds the model with a first call, queues `inputs` in order behind it, then lets it go."""
    gate, sizes = threading.Event(), []

    def held(x):
        sizes.append(len(x))
        if len(sizes) == 1:
            assert gate.wait(10)
        return forward(x)

    batcher = ForwardBatcher(held, max_rows)
    with ThreadPoolExecutor(len(inputs) + 1) as pool:
        first = pool.submit(batcher, inputs[0][:1])
        futures = []
        for x in inputs:
            while len(sizes) < 1 or batcher.stats.calls < len(futures) + 1:
                time.sleep(0.001)
            futures.append(pool.submit(batcher, x))
        while batcher.stats.calls < len(inputs) + 1:
            time.sleep(0.001)
        gate.set()
        first.result(timeout=30)
        outputs = [f.exception(timeout=30) or f.result() for f in futures]
    return batcher, sizes[1:], outputs


def test_concurrent_callers_share_forwards_and_get_their_own_rows():
    model = SlowModel()
    batcher = ForwardBatcher(model, max_rows=64)
    inputs = [np.full((n, 3), float(i), np.float32) for i, n in enumerate([4, 1, 7, 2, 5, 3, 6, 8])]
    outputs = _run_concurrently(batcher, inputs)
    for x, y in zip(inputs, outputs):
        np.testing.assert_array_equal(y, x * 2 + 1)
    assert not model.overlapped  # one model call at a time
    assert batcher.stats.calls == 8
    assert batcher.stats.forwards < 8 and batcher.stats.shared >= 1 and batcher.stats.max_callers > 1
    assert sum(model.batches) == sum(len(x) for x in inputs) == batcher.stats.rows


def test_a_lone_caller_runs_at_once_with_its_own_batch():
    model = SlowModel(0.0)
    batcher = ForwardBatcher(model)
    for n in (3, 5):
        np.testing.assert_array_equal(batcher(np.ones((n, 2))), np.full((n, 2), 3.0))
    assert model.batches == [3, 5] and batcher.stats.shared == 0


def test_calls_skipped_for_size_or_shape_keep_their_place_in_the_queue():
    inputs = [np.full((6, 3), 1.0), np.full((6, 3), 2.0), np.full((2, 4), 3.0), np.full((2, 3), 4.0)]
    batcher, sizes, outputs = _queue_behind_a_busy_model(lambda x: x + 1, 10, inputs)
    # 6 + 2 of shape (., 3) fit 10 rows; the second 6 and the (., 4) rows wait, in order.
    assert sizes == [8, 6, 2]
    for x, y in zip(inputs, outputs):
        np.testing.assert_array_equal(y, x + 1)


def test_a_failing_combined_call_fails_only_the_caller_whose_rows_fail():
    def forward(x):
        if np.isnan(x).any():
            raise RuntimeError("CUDA out of memory (a poisoned row)")
        return x * 2

    inputs = [np.ones((2, 3)), np.full((2, 3), np.nan), np.full((2, 3), 3.0)]
    batcher, sizes, outputs = _queue_behind_a_busy_model(forward, 64, inputs)
    assert batcher.stats.retried == 1 and sizes == [6, 2, 2, 2]  # together, then each alone
    assert isinstance(outputs[1], RuntimeError)
    np.testing.assert_array_equal(outputs[0], inputs[0] * 2)
    np.testing.assert_array_equal(outputs[2], inputs[2] * 2)


def test_an_output_that_is_not_row_wise_is_recomputed_per_caller():
    inputs = [np.ones((2, 3)), np.full((3, 3), 2.0)]
    batcher, sizes, outputs = _queue_behind_a_busy_model(lambda x: x.sum(axis=0, keepdims=True), 64, inputs)
    assert sizes == [5, 2, 3] and batcher.stats.retried == 1
    np.testing.assert_array_equal(outputs[1], [[6.0, 6.0, 6.0]])


def test_rows_of_other_shapes_or_past_max_rows_are_not_mixed():
    model = SlowModel()
    batcher = ForwardBatcher(model, max_rows=10)
    inputs = [np.zeros((6, 3), np.float32), np.zeros((6, 3), np.float32), np.zeros((2, 4), np.float32)]
    inputs += [np.zeros((2, 3), np.float64)]
    outputs = _run_concurrently(batcher, inputs)
    assert [y.shape for y in outputs] == [x.shape for x in inputs]
    assert all(n <= 10 for n in model.batches)
    assert batcher.stats.forwards == 4  # 6+6 > 10; the (., 4) and float64 rows never join them


def test_several_inputs_and_tuple_outputs_split_per_caller():
    def forward(x, mask):
        time.sleep(0.02)
        return x.sum(dim=1), x * mask

    batcher = ForwardBatcher(forward)
    inputs = [(torch.randn(n, 4), torch.ones(n, 4) * n) for n in (1, 2, 3, 4)]
    outputs = _run_concurrently(lambda pair: batcher(*pair), inputs)
    for (x, mask), (total, masked) in zip(inputs, outputs):
        assert torch.equal(total, x.sum(dim=1)) and torch.equal(masked, x * mask)


def test_max_rows_must_be_positive():
    with pytest.raises(ValueError):
        ForwardBatcher(lambda x: x, max_rows=0)
