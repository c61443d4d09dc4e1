"""A challenger beside the champion: shadow scoring and canary routing, with per-version statistics.

- Shadow: the champion answers every request; a copy of the request is queued for the challenger and
  scored after the answer is sent. Shadow work has the lowest priority: a copy is accepted only while no
  other champion request is in flight, it runs only while none is, the queue is bounded, and what does
  not fit (or waits longer than `SHADOW_MAX_AGE_S`) is shed and counted. A mirrored answer never
  reaches a client.
- Canary: `percent`% of requests are answered by the challenger, chosen by a hash of the
  `sticky_header` value when the request has one (one user, one model) and at random otherwise. A
  request the challenger fails on but the champion answers is answered by the champion and counts as a
  challenger error; `CanaryGuard` stops routing to the challenger once its errors over the last
  `window` requests it answered exceed `threshold` (default: more than 1% of 200).

Agreement compares the two models' predictions row by row (the arg-max for probability outputs).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger("mlops_platform.serving")

CHAMPION = "champion"
CHALLENGER = "challenger"
SHADOW = "shadow"
CANARY = "canary"
# A shadow copy older than this is dropped (counted as shed): its comparison would describe old traffic.
SHADOW_MAX_AGE_S = 5.0
_LATENCY_WINDOW = 4096


class VersionStats:
    """Requests, errors and recent latencies of the model in one role."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self._latencies: deque[float] = deque(maxlen=_LATENCY_WINDOW)

    def observe(self, seconds: float, ok: bool) -> None:
        self.requests += 1
        self.errors += not ok
        if ok:
            self._latencies.append(seconds)

    def report(self, version: str | None) -> dict[str, Any]:
        latencies = np.asarray(self._latencies) * 1e3
        p50, p99 = np.percentile(latencies, [50, 99]) if latencies.size else (None, None)
        return {
            "model_version": version,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else None,
            "p50_ms": None if p50 is None else round(float(p50), 3),
            "p99_ms": None if p99 is None else round(float(p99), 3),
        }


class Agreement:
    """How often the two models give the same prediction for the same row."""

    def __init__(self) -> None:
        self.rows = 0
        self.agreed = 0

    def observe(self, champion: Any, challenger: Any) -> None:
        ours, theirs = _labels(champion), _labels(challenger)
        if ours.shape != theirs.shape:
            self.rows += len(ours)
            return
        self.rows += len(ours)
        self.agreed += int((ours == theirs).sum())

    def report(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "agreed": self.agreed,
            "rate": self.agreed / self.rows if self.rows else None,
        }


def _labels(predictions: Any) -> np.ndarray:
    """Row labels: the arg-max of a probability row, the value itself otherwise."""
    array = np.asarray(predictions)
    if array.dtype == object and array.size and isinstance(array.flat[0], dict):  # records output
        array = np.asarray([list(row.values()) for row in predictions], dtype=float)
    return array.argmax(axis=1) if array.ndim == 2 else array


class CanaryGuard:
    """Trips when the challenger's errors among its last `window` answers exceed `threshold * window`."""

    def __init__(self, threshold: float, window: int):
        self.threshold = threshold
        self.window = window
        self._outcomes: deque[bool] = deque(maxlen=window)
        self.tripped = False
        self.reason: str | None = None

    def observe(self, ok: bool) -> bool:
        """Record one challenger answer; True when this one trips the guard."""
        if self.tripped:
            return False
        self._outcomes.append(ok)
        errors = self._outcomes.count(False)
        if errors > self.threshold * self.window:
            self.tripped = True
            self.reason = (
                f"challenger error rate {errors}/{self.window} over its last {self.window} requests exceeds "
                f"{self.threshold:.2%}; canary routing stopped, the champion answers everything"
            )
            return True
        return False

    def report(self) -> dict[str, Any]:
        return {
            "tripped": self.tripped,
            "reason": self.reason,
            "threshold": self.threshold,
            "window": self.window,
            "recent_errors": self._outcomes.count(False),
        }


def canary_bucket(sticky_value: str | None, percent: float) -> bool:
    """True when this request goes to the challenger: stable per sticky value, random without one."""
    if sticky_value is None:
        return random.random() * 100 < percent
    digest = hashlib.blake2b(sticky_value.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 < percent * 100


@dataclass
class ShadowJob:
    """A request the champion answered, waiting for the challenger's copy."""

    queued_at: float
    run: Callable[[], Awaitable[None]]
    shed: Callable[[], None]


class ShadowQueue:
    """Bounded, lowest-priority queue of shadow work: runs only while the champion is idle."""

    def __init__(self, capacity: int):
        self._queue: asyncio.Queue[ShadowJob] = asyncio.Queue(capacity)
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_flight = 0
        self._task: asyncio.Task | None = None
        self.queued = 0
        self.shed = 0
        self.scored = 0

    @contextlib.contextmanager
    def champion_busy(self):
        """Mark a champion request in flight for its whole duration."""
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    def full(self) -> bool:
        """No room for another copy: the queue is full, or champion requests are in flight (under load
        the champion keeps the whole machine; shadow work takes only idle time)."""
        return self._in_flight > 0 or self._queue.full()

    def offer(self, job: ShadowJob) -> None:
        try:
            self._queue.put_nowait(job)
            self.queued += 1
        except asyncio.QueueFull:
            self.shed += 1
            job.shed()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():  # what never ran is shed, so every request keeps its log line
            self.shed += 1
            self._queue.get_nowait().shed()

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            # Lowest priority: wait until no champion request is in flight, and stays so for one more
            # turn of the event loop (requests already on the wire get read in that turn).
            while True:
                await self._idle.wait()
                await asyncio.sleep(0)
                if self._idle.is_set():
                    break
            if time.monotonic() - job.queued_at > SHADOW_MAX_AGE_S:
                self.shed += 1
                job.shed()
                continue
            try:
                await job.run()
                self.scored += 1
            except Exception as error:  # shadow work must never take serving down
                logger.warning("shadow scoring failed: %s", error)

    def report(self) -> dict[str, Any]:
        return {
            "queued": self.queued,
            "scored": self.scored,
            "shed": self.shed,
            "waiting": self._queue.qsize(),
        }
