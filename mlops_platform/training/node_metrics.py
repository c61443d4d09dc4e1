"""System metrics per node of a data-parallel job: `system/node_<k>/<name>`, so a slow node shows.

Each node's local rank 0 samples its own machine with the tracker's sampler (MLflow's monitors, the
same names as a single process's `system/...`), and measures once more at an epoch end when the epoch
was too short for a sample. At each epoch end, when every rank is at the same point
anyway, one gather brings the samples to rank 0, which logs each node's mean over the epoch at
step = epoch through its metrics sink. No other rank talks to the tracking server.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from mlops_platform.tracking.interface import MetricsSink
from mlops_platform.training.distributed import World

PREFIX = "system/"


def node_sampling_interval() -> float:
    """Seconds between samples: the tracker's setting (MLOPS_SYSTEM_METRICS_INTERVAL; 0 = off). Building
    a Tracker only reads the environment: it makes no client and no request."""
    from mlops_platform.tracking import Tracker

    return Tracker().system_metrics_interval


def node_metric_name(node: int, name: str) -> str:
    """`system/cpu_utilization_percentage` of node 1 -> `system/node_1/cpu_utilization_percentage`."""
    return f"{PREFIX}node_{node}/{name.removeprefix(PREFIX)}"


class NodeMetrics:
    """Samples this node (on its local rank 0) and brings every node's samples to rank 0's `sink`.

    Use as a context manager around the fit, and pass `chain(...)` as the Trainer's `on_epoch_end`: every
    rank must call it, since it gathers.

    Args:
        world: this process's rank.
        sink: rank 0's metrics sink; None on other ranks.
        interval: seconds between samples; 0 samples nothing (the gathers still keep ranks in step).
    """

    def __init__(self, world: World, sink: MetricsSink | None, interval: float) -> None:
        self.world = world
        self.sink = sink
        self.interval = interval
        self._pending: list[dict[str, float]] = []
        self._lock = threading.Lock()
        self._sampler = None

    def __enter__(self) -> NodeMetrics:
        if self.world.distributed and self.world.is_node_leader and self.interval > 0:
            from mlops_platform.tracking.system_metrics import SystemMetricsSampler

            self._sampler = SystemMetricsSampler(self._keep, self.interval)
            self._sampler.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._sampler is not None:
            self._sampler.stop()

    def chain(self, then: Callable[[int, dict[str, float]], None] | None) -> Callable | None:
        """The Trainer's `on_epoch_end`: the gather (in a data-parallel job), then `then`."""
        if not self.world.distributed:
            return then

        def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
            self.on_epoch_end(epoch, metrics)
            if then is not None:
                then(epoch, metrics)

        return on_epoch_end

    def _keep(self, values: dict[str, float], step: int) -> None:
        with self._lock:
            self._pending.append(values)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float] | None = None) -> None:
        """Gather each node's mean since the last epoch end to rank 0, which logs it at step `epoch`."""
        with self._lock:
            samples, self._pending = self._pending, []
        if self._sampler is not None and not samples:
            # An epoch shorter than the sampling interval: measure now, so that every epoch has every
            # node's figures (CPU utilization since the last measurement in this process).
            from mlops_platform.tracking.system_metrics import measure_once

            samples = [measure_once()]
        mine = (self.world.node_rank, epoch_means(samples)) if self.world.is_node_leader else None
        gathered = self.world.gather_objects(mine)
        if gathered is None or self.sink is None:
            return
        logged: dict[str, float] = {}
        for item in gathered:
            if item is not None:
                node, means = item
                logged.update({node_metric_name(node, name): value for name, value in means.items()})
        if logged:
            self.sink.log_metrics(logged, step=epoch)


def epoch_means(samples: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over the samples taken during one epoch."""
    totals: dict[str, list[float]] = defaultdict(list)
    for sample in samples:
        for name, value in sample.items():
            totals[name].append(value)
    return {name: sum(values) / len(values) for name, values in totals.items()}
