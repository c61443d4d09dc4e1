"""The run interface, written once: what jobs may call on a tracker and on its runs.

Jobs (training/, data.py, sweeps) are typed with these Protocols and never with a concrete class, so the
real client (`Tracker`/`TrackedRun`, which talk to a tracking server) and the in-memory double
(`RecordingTracker`/`RecordingRun`, for unit tests) are interchangeable, and a job never needs to ask
which one it holds. tests/tracking/test_interface.py checks both against these signatures, member by
member. The shape follows Lightning's `Logger`: the training side talks to a small interface; the
implementation behind it owns the MLflow client.

This module imports nothing heavy (no mlflow): anything may import it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable


@runtime_checkable
class MetricsSink(Protocol):
    """The one thing a training loop needs from a run: somewhere to put metrics."""

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None: ...


@runtime_checkable
class Run(Protocol):
    """One tracking run, used as a context manager: it ends FINISHED, FAILED or KILLED."""

    @property
    def run_id(self) -> str: ...

    @property
    def experiment_id(self) -> str: ...

    @property
    def tracking_uri(self) -> str: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool: ...

    # --- metrics, params, tags ---------------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None: ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_config(self, config: Mapping[str, Any] | Any, params: Mapping[str, Any] | None = None) -> None:
        """The whole config as the `config.json` artifact, plus `params` (default: the config) flattened
        into params."""

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...

    def tag_run(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set tags on ANOTHER run (e.g. the launcher's run of a resume pointing at the continued one)."""

    def flush(self, timeout: float | None = 30) -> bool:
        """Wait until everything logged so far is stored; False if `timeout` passed first."""

    def logged_metric_steps(self, names: Iterable[str] = (), timeout: float = 60.0) -> set[tuple[str, int]]:
        """(metric, step) pairs this run already holds: every metric key it has, plus `names`.

        Raises:
            TimeoutError: records logged earlier were not delivered within `timeout` seconds, so the
                answer would be partial.
        """

    # --- artifacts ---------------------------------------------------------------------------------
    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None: ...

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None: ...

    def log_figure(self, figure: Any, artifact_file: str, **save_kwargs: Any) -> None: ...

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None: ...

    def log_text(self, text: str, artifact_file: str) -> None: ...

    # --- datasets and models -----------------------------------------------------------------------
    def log_dataset(self, frame: Any, name: str, context: str = "train", targets: str | None = None) -> Any:
        """A pandas frame as a dataset input of this run."""

    def log_model(
        self,
        flavor: str,
        model: Any,
        input_example: Any = None,
        signature: Any = None,
        registered_model_name: str | None = None,
        model_files: Mapping[str, Any] | None = None,
        **flavor_kwargs: Any,
    ) -> Any:
        """Log `model` with MLflow's `flavor`; returns an object whose `model_uri` names it.
        `model_files`: JSON documents (file name -> value) stored in the model's folder."""


@runtime_checkable
class Tracker(Protocol):
    """Makes runs against one tracking store."""

    @property
    def tracking_uri(self) -> str: ...

    def run(
        self,
        experiment: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        resume_run_id: str | None = None,
        entry_point: str | None = None,
        use_env_run: bool = True,
    ) -> AbstractContextManager[Run]:
        """A run context (`with tracker.run(...) as run:`): a new run, MLFLOW_RUN_ID's (when
        `use_env_run`), or `resume_run_id` again. A `Run` is its own context; a wrapper such as the
        sweep's `ChildRunTracker` may hand out another context that yields one."""


@runtime_checkable
class DeliverySettings(Protocol):
    """What a `TrackedRun` reads from the `Tracker` that made it (so run.py need not import tracker.py)."""

    @property
    def tracking_uri(self) -> str: ...

    @property
    def home(self) -> Path: ...

    send_interval: float
    heartbeat_interval: float
    system_metrics_interval: float
    close_timeout: float
    replay_on_start: bool
    journal_compact_bytes: int

    def replay_orphans(self, exclude: Iterable[str] = ()) -> threading.Thread: ...
