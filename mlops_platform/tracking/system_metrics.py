"""System metrics (CPU, memory, GPU when present) sampled on a thread and logged like any metric.

They go through the run's journal, so they share its durability. MLflow's own monitor classes do the
measuring (the same metric names as MLflow's system-metrics tab: `system/cpu_utilization_percentage`,
...); a GPU monitor is added only when NVIDIA's management library sees a GPU.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

_log = logging.getLogger(__name__)


def _monitors() -> list:
    from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor

    monitors = [CPUMonitor()]
    try:
        from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

        monitors.append(GPUMonitor())
    except Exception:  # no pynvml or no NVIDIA GPU: CPU and memory only
        _log.debug("no GPU monitor", exc_info=True)
    return monitors


class SystemMetricsSampler:
    """Every `interval` seconds, log the averages of samples taken each `interval / samples` seconds."""

    def __init__(self, log: Callable[[dict[str, float], int], None], interval: float, samples: int = 5):
        self._log_metrics = log
        self.interval = interval
        self.samples = max(1, samples)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlops-system-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        monitors = _monitors()
        step = 0
        while not self._stop.is_set():
            for _ in range(self.samples):
                if self._stop.wait(self.interval / self.samples):
                    return
                for monitor in monitors:
                    monitor.collect_metrics()
            values: dict[str, float] = {}
            for monitor in monitors:
                values.update(monitor.aggregate_metrics())
                monitor.clear_metrics()
            if values:
                self._log_metrics({f"system/{k}": float(v) for k, v in values.items()}, step)
            step += 1


def measure_once() -> dict[str, float]:
    """One measurement now, named as the sampler names its averages: for a stretch of time shorter
    than the sampling interval, in which the sampler logs nothing. It has monitors of its own, since the
    sampler's collect on the sampler's thread."""
    values: dict[str, float] = {}
    for monitor in _monitors():
        monitor.collect_metrics()
        values.update(monitor.aggregate_metrics())
    return {f"system/{k}": float(v) for k, v in values.items()}
