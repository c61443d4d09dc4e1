"""Keeps the garbage collector's full passes off the serving path.

A serving process holds a large, permanent heap: torch, MLflow, pandas and the model itself, some
340,000 tracked objects after the imports alone. CPython's full (generation 2) collection walks all of
them: 200-266 ms per pass in a torch serving process on this project's 2-core machine
(`benchmarks/serving.py --kinds torch`), a few passes a minute under load, each one a stall of every
request in flight, which is what a p99 measures. `gc.freeze()` moves everything alive at startup into
the permanent generation, which the collector no longer walks, so a full pass covers only what requests
allocated since. The frozen objects are still freed by reference counting; only reference cycles among
them (none in a loaded model that stays loaded) would wait for the process to end.
"""

from __future__ import annotations

import gc
import logging
import time

logger = logging.getLogger(__name__)


def freeze_startup_heap() -> int:
    """Collect once, then exclude every object alive now from future collections.

    Call when the process has loaded what it serves, before its first request. Returns how many objects
    were frozen (for the log).
    """
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("froze %d startup objects out of the garbage collector's passes", frozen)
    return frozen


class CollectorClock:
    """Wall time the garbage collector spent, per generation, since `start()` (for /health): a
    collection runs on whatever thread allocated when a threshold was crossed, so on the serving path
    it is a pause of the event loop."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.passes = [0, 0, 0]
        self._started_at = 0.0

    def start(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started_at = time.perf_counter()
        else:
            generation = info["generation"]
            self.seconds[generation] += time.perf_counter() - self._started_at
            self.passes[generation] += 1

    def report(self) -> dict:
        return {
            "passes_by_generation": list(self.passes),
            "seconds_by_generation": [round(seconds, 4) for seconds in self.seconds],
        }
