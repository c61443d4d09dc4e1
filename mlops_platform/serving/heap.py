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
