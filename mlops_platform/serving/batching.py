"""Dynamic micro-batching: concurrent requests share one call of the model (a torch forward pass, a
scikit-learn predict, whose fixed per-call cost is most of a small request's time).

A request's rows join a queue; one task drains it: it takes what is queued (up to `max_batch_size`
rows), keeps collecting while new requests keep arriving (at most `max_wait_s` after the first), runs
the model once on the concatenation in a worker thread (so the event loop goes on reading requests
meanwhile; torch releases the GIL while it computes), and hands each request its slice of the output.

Under light load a request waits for no one; under heavy load batches form by themselves while the
previous batch computes. The draining task ends when the queue is empty and restarts on the next
request, so a batcher whose model has been swapped out by a reload simply goes idle.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np


class MicroBatcher:
    """Batches calls of `fn(array) -> array` whose inputs and outputs line up row for row."""

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray] | None,
        executor: Executor,
        max_batch_size: int,
        max_wait_s: float,
        parts_fn: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None,
    ):
        """`fn` takes the batch's rows joined; or `parts_fn` takes each request's rows apart and returns
        each one's output (for models that run part of their work per request: tables.py)."""
        self._fn = fn
        self._parts_fn = parts_fn
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._queue: deque[tuple[np.ndarray, asyncio.Future]] = deque()
        self._task: asyncio.Task | None = None
        # Sizes of the batches run so far (for tests and /health).
        self.batches = 0
        self.rows = 0
        self.largest = 0

    async def submit(self, rows: np.ndarray) -> np.ndarray:
        """The model's output for `rows`, computed together with whatever else is queued."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((rows, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch = await self._collect()
            inputs = [rows for rows, _ in batch]
            try:
                outputs = await loop.run_in_executor(self._executor, self._run, inputs)
            except Exception as error:
                # One request's rows must not fail its neighbours': retry each alone, so the failure
                # lands only on the request that causes it.
                if len(batch) == 1:
                    _settle(batch[0][1], error=error)
                else:
                    for rows, future in batch:
                        try:
                            [output] = await loop.run_in_executor(self._executor, self._run, [rows])
                            _settle(future, output)
                        except Exception as alone:
                            _settle(future, error=alone)
                continue
            size = sum(len(rows) for rows in inputs)
            self.batches += 1
            self.rows += size
            self.largest = max(self.largest, size)
            for (_, future), output in zip(batch, outputs, strict=True):
                _settle(future, output)

    def _run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Each input's output, from one model call (in the executor's thread)."""
        if self._parts_fn is not None:
            return self._parts_fn(inputs)
        joined = inputs[0] if len(inputs) == 1 else np.concatenate(inputs)
        output = self._fn(joined)
        outputs, start = [], 0
        for rows in inputs:
            stop = start + len(rows)
            outputs.append(output[start:stop])
            start = stop
        return outputs

    async def _collect(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        batch = [self._queue.popleft()]
        size = len(batch[0][0])
        deadline = time.monotonic() + self.max_wait_s
        while size < self.max_batch_size:
            if not self._queue:
                if time.monotonic() >= deadline:
                    break
                # One turn of the event loop lets requests already on the wire join; stop waiting as
                # soon as a turn brings nobody new, so a lone request is not held back.
                await asyncio.sleep(0)
                if not self._queue:
                    break
                continue
            if size + len(self._queue[0][0]) > self.max_batch_size:
                break
            rows, future = self._queue.popleft()
            batch.append((rows, future))
            size += len(rows)
        return batch


def _settle(future: asyncio.Future, result: object = None, error: BaseException | None = None) -> None:
    if future.done():  # a client that went away leaves a cancelled future
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
