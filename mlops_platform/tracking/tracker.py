"""`Tracker`: makes run contexts against one tracking server, with the delivery settings they share."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlops_platform.settings import mlops_home, resolve_tracking_uri
from mlops_platform.tracking.run import TrackedRun


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


class Tracker:
    """Entry point of the tracking client.

    Args:
        tracking_uri: the server; None resolves it with `settings.resolve_tracking_uri()` when a run starts.
        home: where journals live; default `$MLOPS_HOME`.
        send_interval: seconds between the sender's looks at the journal (it also wakes on flush). Each
            look sends everything that accumulated; fewer, fuller requests cost the server less CPU.
        heartbeat_interval: seconds between heartbeats (env MLOPS_HEARTBEAT_INTERVAL, default 30).
        system_metrics_interval: seconds between system-metric points; 0 turns them off
            (env MLOPS_SYSTEM_METRICS_INTERVAL, default 10, as MLflow samples).
        close_timeout: how long the end of a run waits for delivery before leaving the rest to
            `mlops sync`.
        replay_on_start: deliver journals that dead processes left behind, in the background, when a
            run starts.
        journal_compact_bytes: a live run's journal is emptied once this many bytes of it are
            delivered, so a long run does not fill the disk with records the server already holds.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        home: Path | None = None,
        send_interval: float = 1.0,
        heartbeat_interval: float | None = None,
        system_metrics_interval: float | None = None,
        close_timeout: float = 30.0,
        replay_on_start: bool = True,
        journal_compact_bytes: int = 64 * 1024 * 1024,
    ):
        self._explicit_uri = tracking_uri
        self._home = home
        self.send_interval = send_interval
        self.heartbeat_interval = (
            heartbeat_interval
            if heartbeat_interval is not None
            else _env_float("MLOPS_HEARTBEAT_INTERVAL", 30.0)
        )
        self.system_metrics_interval = (
            system_metrics_interval
            if system_metrics_interval is not None
            else _env_float("MLOPS_SYSTEM_METRICS_INTERVAL", 10.0)
        )
        self.close_timeout = close_timeout
        self.replay_on_start = replay_on_start
        self.journal_compact_bytes = journal_compact_bytes

    @property
    def tracking_uri(self) -> str:
        return resolve_tracking_uri(self._explicit_uri)

    @property
    def home(self) -> Path:
        return self._home or mlops_home()

    def run(
        self,
        experiment: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        resume_run_id: str | None = None,
        entry_point: str | None = None,
        use_env_run: bool = True,
    ) -> TrackedRun:
        """A run context (see `TrackedRun`): `with tracker.run(...) as run:`.

        Args:
            experiment: experiment name; None -> MLFLOW_EXPERIMENT_NAME, MLFLOW_EXPERIMENT_ID, "Default".
            resume_run_id: attach to this existing run and set it RUNNING again (checkpoint resume).
            use_env_run: attach to MLFLOW_RUN_ID when set (under `mlflow run`); False forces a new run.
        """
        return TrackedRun(self, experiment, run_name, tags, resume_run_id, entry_point, use_env_run)

    def replay_orphans(self, exclude: Iterable[str] = ()) -> threading.Thread:
        """Deliver journals left by dead processes, on a background thread (one try each)."""
        from mlops_platform.tracking.replay import sync_journals

        thread = threading.Thread(
            target=sync_journals,
            kwargs={
                "home": self.home,
                "attempts": 1,
                "exclude": tuple(exclude),
                "configured_uri": self.tracking_uri,
            },
            name="mlops-replay",
            daemon=True,
        )
        thread.start()
        return thread
