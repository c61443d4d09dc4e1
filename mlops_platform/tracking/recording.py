"""`RecordingTracker`: the `Tracker` interface (tracking/interface.py) kept in memory, for unit tests
of training code.

It applies the same rules as the real client (param flattening and conflicts, metric-name checks) so
a loop that passes against it logs the same things to a server. Tests of the tracker itself use a
real server, not this.
"""

from __future__ import annotations

import itertools
import json
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_platform.tracking import params as param_rules
from mlops_platform.tracking.run import CONFIG_ARTIFACT, TRACEBACK_ARTIFACT, RunKilled, _check_metric_name

_ids = itertools.count(1)


@dataclass
class RecordedModel:
    """What `log_model` returns here; `model_uri` looks like a LoggedModel's ("models:/<id>")."""

    model_uri: str
    flavor: str
    model: Any
    input_example: Any = None
    signature: Any = None
    registered_model_name: str | None = None
    kwargs: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)  # model_files: JSON documents stored with the model


class RecordingRun:
    """A `Run` (tracking/interface.py) kept in memory; its records are plain attributes to assert on."""

    def __init__(
        self,
        experiment: str | None,
        run_name: str | None,
        tags: Mapping[str, Any] | None,
        tracking_uri: str = "recording://",
        **options,
    ):
        self.run_id = f"recorded-{next(_ids)}"
        self.experiment_id = "0"
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.options = options
        self.status: str | None = None
        self.params: dict[str, str] = {}
        self.metrics: dict[str, list[tuple[int, float]]] = {}
        self.tags: dict[str, str] = {k: str(v) for k, v in (tags or {}).items()}
        self.artifacts: dict[str, Any] = {}
        self.datasets: list[dict] = []
        self.models: list[RecordedModel] = []
        self.config: dict | None = None
        self.flushes = 0
        self.other_run_tags: dict[str, dict[str, str]] = {}  # what tag_run set, by run id

    def __enter__(self) -> RecordingRun:
        self.status = "RUNNING"
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.status = "FINISHED"
        elif issubclass(exc_type, (RunKilled, KeyboardInterrupt)):
            self.status = "KILLED"
        else:
            self.status = "FAILED"
            self.artifacts[TRACEBACK_ARTIFACT] = "".join(traceback.format_exception(exc_type, exc, tb))
        return False

    def history(self, key: str) -> list[float]:
        """Values of `key` in logging order."""
        return [value for _, value in self.metrics.get(key, [])]

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        for key, value in metrics.items():
            _check_metric_name(key)
            self.metrics.setdefault(key, []).append((0 if step is None else int(step), float(value)))

    def log_params(self, params: Mapping[str, Any]) -> None:
        prepared, overflow = param_rules.prepare_params(params)
        for key, value in prepared.items():
            if key not in self.params:
                self.params[key] = value
        if overflow:
            self.artifacts[param_rules.OVERFLOW_ARTIFACT] = {
                **self.artifacts.get(param_rules.OVERFLOW_ARTIFACT, {}),
                **overflow,
            }

    def log_config(self, config: Mapping[str, Any] | Any, params: Mapping[str, Any] | None = None) -> None:
        if not isinstance(config, Mapping):
            config = config.model_dump(mode="json") if hasattr(config, "model_dump") else dict(config)
        self.config = json.loads(json.dumps(config, default=str))
        self.artifacts[CONFIG_ARTIFACT] = self.config
        self.log_params(config if params is None else params)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tags.update({k: str(v) for k, v in tags.items()})

    def tag_run(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.other_run_tags.setdefault(run_id, {}).update({k: str(v) for k, v in tags.items()})

    def flush(self, timeout: float | None = 30) -> bool:
        self.flushes += 1
        return True

    def logged_metric_steps(self, names: Iterable[str] = (), timeout: float = 60.0) -> set[tuple[str, int]]:
        return {(name, step) for name, points in self.metrics.items() for step, _ in points}

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(local_path)
        self.artifacts[_join(artifact_path, path.name)] = path.read_bytes()

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        root = Path(local_dir)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            self.artifacts[_join(artifact_path, path.relative_to(root).as_posix())] = path.read_bytes()

    def log_figure(self, figure, artifact_file: str, **save_kwargs) -> None:
        self.artifacts[artifact_file] = figure

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        self.artifacts[artifact_file] = dict(dictionary)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.artifacts[artifact_file] = text

    def log_dataset(self, frame, name: str, context: str = "train", targets: str | None = None) -> None:
        self.datasets.append({"frame": frame, "name": name, "context": context, "targets": targets})

    def log_model(
        self,
        flavor: str,
        model,
        input_example=None,
        signature=None,
        registered_model_name: str | None = None,
        model_files: Mapping[str, Any] | None = None,
        **flavor_kwargs,
    ) -> RecordedModel:
        recorded = RecordedModel(
            f"models:/m-recorded-{next(_ids)}",
            flavor,
            model,
            input_example,
            signature,
            registered_model_name,
            flavor_kwargs,
            json.loads(json.dumps(dict(model_files or {}), default=str)),
        )
        self.models.append(recorded)
        return recorded


class RecordingTracker:
    """Same constructor and `run(...)` as `Tracker`; every run it made is kept in `runs`."""

    def __init__(self, tracking_uri: str | None = None, **options):
        self.tracking_uri = tracking_uri or "recording://"
        self.options = options
        self.runs: list[RecordingRun] = []

    def run(
        self,
        experiment: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        resume_run_id: str | None = None,
        entry_point: str | None = None,
        use_env_run: bool = True,
    ) -> RecordingRun:
        run = RecordingRun(
            experiment,
            run_name,
            tags,
            self.tracking_uri,
            resume_run_id=resume_run_id,
            entry_point=entry_point,
            use_env_run=use_env_run,
        )
        self.runs.append(run)
        return run

    @property
    def last_run(self) -> RecordingRun:
        if not self.runs:
            raise LookupError("no run was started on this RecordingTracker")
        return self.runs[-1]


def _join(artifact_path: str | None, name: str) -> str:
    return f"{artifact_path.rstrip('/')}/{name}" if artifact_path else name
