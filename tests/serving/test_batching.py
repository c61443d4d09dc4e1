"""Micro-batching: concurrent requests share forward passes and each gets exactly its own rows back."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mlops_platform.serving.batching import MicroBatcher


def _slow_double(rows: np.ndarray) -> np.ndarray:
    time.sleep(0.02)  # a forward pass long enough for the next requests to queue up behind it
    return rows * 2


def test_concurrent_requests_share_batches_and_get_their_own_rows():
    async def scenario() -> tuple[list[np.ndarray], MicroBatcher]:
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(_slow_double, executor, max_batch_size=64, max_wait_s=0.005)
            inputs = [np.full((i % 3 + 1, 4), float(i)) for i in range(40)]
            outputs = await asyncio.gather(*(batcher.submit(rows) for rows in inputs))
            return inputs, outputs, batcher

    inputs, outputs, batcher = asyncio.run(scenario())
    for rows, output in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(output, rows * 2)
    assert batcher.rows == sum(len(rows) for rows in inputs)
    assert batcher.batches < 10  # 40 requests, 79 rows: batched, never above 64 rows a pass


def test_max_batch_size_is_respected_and_a_lone_request_does_not_wait():
    seen: list[int] = []

    def record(rows: np.ndarray) -> np.ndarray:
        seen.append(len(rows))
        return rows

    async def scenario() -> float:
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(record, executor, max_batch_size=5, max_wait_s=1.0)
            await asyncio.gather(*(batcher.submit(np.ones((2, 1))) for _ in range(6)))
            start = time.monotonic()
            await batcher.submit(np.ones((1, 1)))
            return time.monotonic() - start

    lone_latency = asyncio.run(scenario())
    assert max(seen[:-1]) <= 5 and sum(seen) == 13
    assert lone_latency < 0.5  # not held for max_wait when nobody else is coming


def test_a_request_the_model_fails_on_fails_alone_and_the_batcher_keeps_going():
    def fail_on_negative(rows: np.ndarray) -> np.ndarray:
        if (rows < 0).any():
            raise ValueError("negative input")
        return rows

    async def scenario():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(fail_on_negative, executor, max_batch_size=8, max_wait_s=0.01)
            bad, good = await asyncio.gather(
                batcher.submit(-np.ones((1, 1))), batcher.submit(np.ones((1, 1))), return_exceptions=True
            )
            return bad, good

    bad, good = asyncio.run(scenario())
    assert isinstance(bad, ValueError) and good.tolist() == [[1.0]]


def test_parts_fn_gets_each_requests_rows_apart_in_one_call():
    """The table path's batches (serving/tables.py): one call takes every queued request's rows, kept
    apart, and each request gets back the output made for its own rows."""
    calls: list[list[int]] = []

    def parts(inputs: list[np.ndarray]) -> list[np.ndarray]:
        calls.append([len(rows) for rows in inputs])
        return [rows.sum(axis=1) + len(rows) for rows in inputs]

    async def scenario() -> tuple[list[np.ndarray], list[np.ndarray]]:
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(None, executor, max_batch_size=64, max_wait_s=1.0, parts_fn=parts)
            inputs = [np.full((i + 1, 2), float(i)) for i in range(5)]
            return inputs, await asyncio.gather(*(batcher.submit(rows) for rows in inputs))

    inputs, outputs = asyncio.run(scenario())
    assert calls == [[1, 2, 3, 4, 5]]
    for rows, output in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(output, rows.sum(axis=1) + len(rows))
