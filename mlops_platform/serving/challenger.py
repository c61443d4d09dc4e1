"""A challenger beside the champion: shadow scoring and canary routing, with per-version statistics.

- Shadow: the champion answers every request; a copy of the request goes to the challenger, which
  scores it in a process of its own at the lowest CPU priority (shadow.py, shadow_worker.py). A copy is
  accepted only while the champion is not busy (busy.py) and fewer than `--shadow-queue` copies await
  their result; what does not fit (or waits too long for CPU) is shed and counted. A mirrored answer
  never reaches a client.
- Canary: `percent`% of requests are answered by the challenger, chosen by a hash of the
  `sticky_header` value when the request has one (one user, one model) and at random otherwise. A
  request the challenger fails on but the champion answers is answered by the champion and counts as a
  challenger error; `CanaryGuard` stops routing to the challenger once its errors over the last
  `window` requests it answered exceed `threshold` (default: more than 1% of 200).

Agreement compares the two models' predictions row by row (the arg-max for probability outputs).
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import deque
from typing import Any

import numpy as np

logger = logging.getLogger("mlops_platform.serving")

CHAMPION = "champion"
CHALLENGER = "challenger"
SHADOW = "shadow"
CANARY = "canary"
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

    def observe_many(self, ok_seconds: list[float], errors: int) -> None:
        """`observe` for many at once: the latencies of those that succeeded, and a count of failures."""
        self.requests += len(ok_seconds) + errors
        self.errors += errors
        self._latencies.extend(ok_seconds)

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
        self.add(*agreement_counts(champion, challenger))

    def add(self, rows: int, agreed: int) -> None:
        self.rows += rows
        self.agreed += agreed

    def report(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "agreed": self.agreed,
            "rate": self.agreed / self.rows if self.rows else None,
        }


def agreement_counts(champion: Any, challenger: Any) -> tuple[int, int]:
    """(rows compared, rows where both models give the same label); outputs of different shapes agree
    nowhere."""
    ours, theirs = row_labels(champion), row_labels(challenger)
    if ours.shape != theirs.shape:
        return len(ours), 0
    return len(ours), int((ours == theirs).sum())


def row_labels(predictions: Any) -> np.ndarray:
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
