"""The run context: what training code talks to.

Metrics, params, tags and artifacts go to the run's journal (artifacts as a copy in its spool) and the
call returns at once; the background sender delivers them in order. Datasets and models are sent when
called: the caller needs what the server returns (a LoggedModel's id), and `log_model` first flushes
what came before.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mlops_platform.errors import UserError
from mlops_platform.tracking import params as param_rules
from mlops_platform.tracking.heartbeat import Heartbeat, heartbeat_value
from mlops_platform.tracking.interface import DeliverySettings
from mlops_platform.tracking.journal import Journal, JournalLocked, JournalMeta
from mlops_platform.tracking.sender import Sender
from mlops_platform.tracking.server_clock import ServerClock
from mlops_platform.tracking.system_metrics import SystemMetricsSampler
from mlops_platform.tracking.tags import ERROR_TAG, HEARTBEAT_INTERVAL_TAG, HEARTBEAT_TAG, standard_tags

_log = logging.getLogger(__name__)
CONFIG_ARTIFACT = "config.json"
TRACEBACK_ARTIFACT = "error/traceback.txt"
_TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# MLflow's fluent state is process-global: log_model borrows it, one call at a time.
_FLUENT_LOCK = threading.Lock()


class RunKilled(SystemExit):
    """Raised in the main thread by SIGTERM/SIGINT: the run ends KILLED and the process exits 128+signal."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


class TrackedRun:
    """One MLflow run. Create it with `Tracker.run(...)` and use it as a context manager."""

    def __init__(
        self,
        tracker: DeliverySettings,
        experiment: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        resume_run_id: str | None = None,
        entry_point: str | None = None,
        use_env_run: bool = True,
    ):
        self.tracker = tracker
        self.tracking_uri = tracker.tracking_uri
        self._experiment = experiment
        self._run_name = run_name
        self._user_tags = {k: str(v) for k, v in (tags or {}).items()}
        self._resume_run_id = resume_run_id
        self._entry_point = entry_point
        self._use_env_run = use_env_run
        self.run_id: str = ""
        self.experiment_id: str = ""
        self.status: str | None = None
        self._params: dict[str, str] = {}
        self._overflow: dict[str, str] = {}
        self._tag_overflow: dict[str, str] = {}
        self._metric_names: set[str] = set()
        self._previous_handlers: dict[int, Any] = {}
        self._end_time_ms = 0
        self._journal: Journal | None = None
        self._sender: Sender | None = None
        self._heartbeat: Heartbeat | None = None
        self._sampler: SystemMetricsSampler | None = None
        self.replay_thread: threading.Thread | None = None  # delivering orphaned journals, if any

    # --- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> TrackedRun:
        from mlflow import MlflowClient

        self.client = MlflowClient(self.tracking_uri)
        self._clock = ServerClock(self.tracking_uri)
        run = self._start_or_attach()
        self.run_id, self.experiment_id = run.info.run_id, run.info.experiment_id
        self._params = dict(run.data.params)
        tracker = self.tracker
        try:
            self._journal = Journal.open_for_run(
                JournalMeta(self.run_id, self.experiment_id, self.tracking_uri), tracker.home
            )
        except JournalLocked:
            raise  # another live process tracks this run and will end it
        except BaseException as error:
            self._end_without_journal(error)
            raise
        self._sender = Sender(
            self._journal,
            self.client,
            self.run_id,
            interval=tracker.send_interval,
            compact_bytes=tracker.journal_compact_bytes,
        )
        try:
            self._sender.start()
            self.set_tags({**standard_tags(self._entry_point), **self._user_tags})
            self._heartbeat = Heartbeat(self.client, self.run_id, tracker.heartbeat_interval, self._clock.now)
            self._heartbeat.start()
            if tracker.system_metrics_interval:
                self._sampler = SystemMetricsSampler(self.log_metrics, tracker.system_metrics_interval)
                self._sampler.start()
            self._install_signal_handlers()
        except BaseException:  # a run that cannot start properly still ends, and releases its journal
            self._restore_signal_handlers()
            self._close("FAILED")
            raise
        if tracker.replay_on_start:
            self.replay_thread = tracker.replay_orphans(exclude={self.run_id})
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        # While the run ends, a second SIGTERM/SIGINT must not cut the delivery of its end short: Ctrl-C
        # reaches both `mlflow run` and the job, and the launcher then sends the job a SIGTERM of its own.
        self._ignore_signals_while_closing()
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, (RunKilled, KeyboardInterrupt)):
            status = "KILLED"
        else:
            status = "FAILED"
        try:
            if status == "FAILED":
                self._record_failure(exc_type, exc, tb)
        except Exception as error:  # e.g. the disk that failed the run also refuses the traceback
            print(
                f"tracking: could not record why run {self.run_id} failed: {type(error).__name__}: {error}",
                file=sys.stderr,
            )
        finally:
            try:
                self._close(status)
            finally:
                self._restore_signal_handlers()
        if status == "KILLED" and self._launched_by_mlflow_run():
            from mlops_platform.tracking.killed_guard import start_guard

            start_guard(self.run_id, self._end_time_ms, self.tracking_uri)
        return False

    def _launched_by_mlflow_run(self) -> bool:
        """This run is the one `mlflow run` made for the job, which its launcher ends after the job."""
        return self._use_env_run and os.environ.get("MLFLOW_RUN_ID") == self.run_id

    def _start_or_attach(self):
        client = self.client
        run_id = self._resume_run_id or (os.environ.get("MLFLOW_RUN_ID") if self._use_env_run else None)
        if run_id:
            run = client.get_run(run_id)
            if run.info.lifecycle_stage == "deleted":
                raise UserError(f"run {run_id} is deleted; restore it or start a new run")
            if run.info.status != "RUNNING":
                client.update_run(run_id, status="RUNNING")
            client.set_tag(run_id, HEARTBEAT_INTERVAL_TAG, self._heartbeat_interval_value())
            client.set_tag(run_id, HEARTBEAT_TAG, heartbeat_value(self._clock.now()))
            return client.get_run(run_id)
        from mlflow.tracking.context.registry import resolve_tags

        tags = resolve_tags(
            {
                HEARTBEAT_TAG: heartbeat_value(self._clock.now()),
                HEARTBEAT_INTERVAL_TAG: self._heartbeat_interval_value(),
            }
        )
        return client.create_run(self._experiment_id(), run_name=self._run_name, tags=tags)

    def _heartbeat_interval_value(self) -> str:
        return f"{self.tracker.heartbeat_interval:g}"

    def _experiment_id(self) -> str:
        name = self._experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME")
        if not name and os.environ.get("MLFLOW_EXPERIMENT_ID"):
            return os.environ["MLFLOW_EXPERIMENT_ID"]
        name = name or "Default"
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        from mlflow.exceptions import MlflowException

        try:
            return self.client.create_experiment(name)
        except MlflowException:  # created meanwhile by another process
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _record_failure(self, exc_type, exc, tb) -> None:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        message = error_message(exc_type, exc)
        try:
            self.set_tags({ERROR_TAG: message})
        except OSError:  # the journal cannot take it (a full disk): the reason goes straight to the server
            self.client.set_tag(self.run_id, ERROR_TAG, message)
        self.log_text(text, TRACEBACK_ARTIFACT)

    def _end_without_journal(self, error: BaseException) -> None:
        """The journal could not be opened: end the run on the server directly, so it is not left
        RUNNING for nobody. Best effort: the server may be the reason."""
        try:
            self.client.set_tag(self.run_id, ERROR_TAG, error_message(type(error), error))
            self.client.set_terminated(self.run_id, status="FAILED")
        except Exception as failure:
            print(
                f"tracking: run {self.run_id} could not open its journal ({error}) nor be marked "
                f"FAILED ({failure}); `mlops runs reap` will end it",
                file=sys.stderr,
            )

    def _close(self, status: str) -> None:
        self.status = status
        assert self._journal is not None and self._sender is not None
        try:
            if self._sampler is not None:
                self._sampler.stop()
        finally:
            if self._heartbeat is not None:
                self._heartbeat.stop()
        self._end_time_ms = int(time.time() * 1000)
        try:
            self._journal.append_end(status, self._end_time_ms)
            end_journaled = True
        except OSError as error:  # a full disk: what is journaled is delivered, the end goes direct
            print(f"tracking: run {self.run_id}: {error}; ending it on the server directly", file=sys.stderr)
            end_journaled = False
        delivered = self._sender.flush(self.tracker.close_timeout)
        self._sender.stop()
        if not end_journaled:
            delivered = delivered and self._end_directly(status)
        if delivered:
            self._journal.remove()
            return
        self._journal.close()
        message = (
            f"tracking: run {self.run_id} ended {status} but {self._sender.pending_bytes()} bytes of records "
            f"were not delivered ({self._sender.last_error or 'timed out'}); they are kept in "
            f"{self._journal.directory}: run `mlops sync` when the server is back"
        )
        print(message, file=sys.stderr)  # not only a log record: it must be seen whatever logging says

    def _end_directly(self, status: str) -> bool:
        try:
            self.client.set_terminated(self.run_id, status=status)
        except Exception as error:
            print(f"tracking: could not end run {self.run_id} as {status}: {error}", file=sys.stderr)
            return False
        return True

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread

        def handler(signum, frame):
            raise RunKilled(signum)

        for sig in _TERMINATING_SIGNALS:
            self._previous_handlers[sig] = signal.signal(sig, handler)

    def _ignore_signals_while_closing(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in _TERMINATING_SIGNALS:
            previous = signal.signal(sig, signal.SIG_IGN)
            self._previous_handlers.setdefault(sig, previous)

    def _restore_signal_handlers(self) -> None:
        for sig, previous in self._previous_handlers.items():
            signal.signal(sig, previous)
        self._previous_handlers.clear()

    # --- metrics, params, tags (journaled) ---------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Append metrics to the journal and return; the sender delivers them.

        Raises:
            ValueError: a metric name MLflow would refuse, or a value that is not a number.
        """
        values = {}
        for key, value in metrics.items():
            if key not in self._metric_names:
                _check_metric_name(key)
                self._metric_names.add(key)
            values[key] = float(value)
        self._journal.append_metrics(values, 0 if step is None else int(step), int(time.time() * 1000))

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (nested dicts flattened as "a.b").

        A param already on the run with the same meaning ("1e-3" vs 0.001, "" vs None: what `mlflow run`
        logs from the command line) is skipped; one with a different value is skipped with a warning,
        since MLflow never changes a param. Overlong values follow the rule in `params`.
        """
        prepared, overflow = param_rules.prepare_params(params)
        new = {}
        for key, value in prepared.items():
            stored = self._params.get(key)
            if stored is None:
                new[key] = value
            elif not param_rules.same_param_value(stored, value):
                _log.warning(
                    "param %r of run %s is already %r; keeping it (the new value %r is in the config "
                    "artifact when logged through log_config)",
                    key, self.run_id, stored, value,
                )  # fmt: skip
        self._params.update(new)
        if new:
            self._journal.append_params(new)
        if overflow:
            self._merge_overflow(overflow)

    def log_config(self, config: Mapping[str, Any] | Any, params: Mapping[str, Any] | None = None) -> None:
        """The resolved config in full as the `config.json` artifact, and `params` (default: the whole
        config) flattened into params."""
        if not isinstance(config, Mapping):
            config = config.model_dump(mode="json") if hasattr(config, "model_dump") else dict(config)
        self.log_dict(_jsonable(config), CONFIG_ARTIFACT)
        self.log_params(config if params is None else params)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags; a value over MLflow's limit is cut with a marker and kept whole in
        `tags_overflow.json` (the rule in `params`)."""
        prepared, overflow = param_rules.prepare_tags(tags)
        self._journal.append_tags(prepared)
        if overflow:
            self._tag_overflow.update(overflow)
            self.log_dict(self._tag_overflow, param_rules.TAG_OVERFLOW_ARTIFACT)

    def flush(self, timeout: float | None = 30) -> bool:
        """Wait until everything logged so far is on the server; False if `timeout` passed first."""
        return self._sender.flush(timeout)

    def tag_run(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set tags on another run, directly on the server (that run has no journal of ours)."""
        for key, value in tags.items():
            self.client.set_tag(run_id, key, str(value))

    def logged_metric_steps(self, names: Iterable[str] = (), timeout: float = 60.0) -> set[tuple[str, int]]:
        """(metric, step) pairs the run holds on the server: every key it has, plus `names`.

        Records still in the journal (a resumed run continues the journal of the process that died)
        are delivered first, so they count too.

        Raises:
            TimeoutError: the server did not take the pending records within `timeout` seconds.
        """
        if not self.flush(timeout=timeout):
            raise TimeoutError(
                f"run {self.run_id}: the tracking server did not take the pending records within "
                f"{timeout:.0f}s"
            )
        keys = {*names, *self.client.get_run(self.run_id).data.metrics}
        pairs: set[tuple[str, int]] = set()
        for key in sorted(keys):
            pairs.update((key, metric.step) for metric in self.client.get_metric_history(self.run_id, key))
        return pairs

    # --- artifacts (spooled, uploaded by the sender) -----------------------------------------------
    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        """Queue a file for upload; a copy is taken now, so the caller may delete or rewrite it."""
        source = Path(local_path)
        if not source.is_file():
            raise FileNotFoundError(f"no such file to log as an artifact: {source}")
        spooled = self._journal.new_spool_entry() / source.name
        shutil.copy2(source, spooled)
        self._journal.append_artifact(spooled, artifact_path)

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        """Queue a folder's contents for upload under `artifact_path` (copied now)."""
        source = Path(local_dir)
        if not source.is_dir():
            raise NotADirectoryError(f"no such folder to log as artifacts: {source}")
        spooled = self._journal.new_spool_entry() / "files"
        shutil.copytree(source, spooled)
        self._journal.append_artifact(spooled, artifact_path)

    def log_figure(self, figure, artifact_file: str, **save_kwargs) -> None:
        """A matplotlib figure, saved in the format `artifact_file`'s extension names."""
        with self._spooled_file(artifact_file) as path:
            figure.savefig(path, **save_kwargs)

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        """JSON, or YAML for a .yml/.yaml `artifact_file` (as MLflow's log_dict)."""
        with self._spooled_file(artifact_file) as path:
            if path.suffix in (".yml", ".yaml"):
                import yaml

                path.write_text(yaml.safe_dump(dict(dictionary), indent=2, default_flow_style=False))
            else:
                path.write_text(json.dumps(dictionary, indent=2, default=str))

    def log_text(self, text: str, artifact_file: str) -> None:
        with self._spooled_file(artifact_file) as path:
            path.write_text(text)

    @contextlib.contextmanager
    def _spooled_file(self, artifact_file: str) -> Iterator[Path]:
        directory, _, name = artifact_file.rpartition("/")
        if not name:
            raise ValueError(f"artifact_file {artifact_file!r} names no file")
        path = self._journal.new_spool_entry() / name
        yield path
        self._journal.append_artifact(path, directory or None)

    # --- datasets and models (sent at once: the caller needs what the server returns) ---------------
    def log_dataset(self, frame, name: str, context: str = "train", targets: str | None = None):
        """Log a pandas frame as an MLflow dataset input of this run (digest, schema, profile)."""
        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        with warnings.catch_warnings():
            # MLflow's hint about integer columns concerns serving signatures, not dataset records.
            warnings.filterwarnings("ignore", message=".*Inferred schema contains integer column")
            dataset = mlflow.data.from_pandas(frame, name=name, targets=targets)
            # The schema is inferred here, lazily, so the entity is built under the same filter.
            entity = DatasetInput(
                dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)]
            )
        self.client.log_inputs(self.run_id, datasets=[entity])
        return dataset

    def log_model(
        self,
        flavor: str,
        model,
        input_example=None,
        signature=None,
        registered_model_name: str | None = None,
        model_files: Mapping[str, Any] | None = None,
        **flavor_kwargs,
    ):
        """Log `model` with MLflow's `flavor` ("sklearn", "pytorch", ...) as a LoggedModel of this run.

        `model_files` are JSON documents (file name -> JSON-ready value) stored in the model's own
        folder beside MLmodel, such as the skew profile: they travel with the model wherever a
        registered version goes, which a run artifact would not. They are uploaded before the version
        is registered, so a registered version never lacks them.

        For "pyfunc", `model` is the python_model: a models-from-code file's path, or an instance.
        Returns the flavor's ModelInfo (`model_uri` is "models:/<model_id>").
        """
        import mlflow

        module = importlib.import_module(f"mlflow.{flavor}")
        # pyfunc's first parameter is the deprecated artifact_path; the model is python_model.
        model_args = () if flavor == "pyfunc" else (model,)
        if flavor == "pyfunc":
            flavor_kwargs = {"python_model": model, **flavor_kwargs}
        # Flush first: MLflow copies the run's metrics at the model's step onto the LoggedModel.
        self.flush(timeout=self.tracker.close_timeout)
        with self._fluent_scope():
            info = module.log_model(
                *model_args,
                name="model",
                input_example=input_example,
                signature=signature,
                registered_model_name=None if model_files else registered_model_name,
                **flavor_kwargs,
            )
            if not model_files:
                return info
            with tempfile.TemporaryDirectory() as folder:
                for file_name, document in model_files.items():
                    Path(folder, file_name).write_text(json.dumps(document, default=str))
                self.client.log_model_artifacts(info.model_id, folder)
            if registered_model_name:
                # The URI MLflow's own log_model registers with: the version then names both the run
                # and the LoggedModel (a models:/<id> URI would leave its run_id empty).
                version = mlflow.register_model(f"runs:/{self.run_id}/model", registered_model_name)
                info.registered_model_version = version.version
            return info

    @contextlib.contextmanager
    def _fluent_scope(self) -> Iterator[None]:
        """Make this run and server MLflow's active ones for one call, then put everything back.

        `Model.log` takes the run and the tracking URI from MLflow's fluent state (and the experiment
        of the LoggedModel from the active run). The run is pushed on the active-run stack directly,
        not with `mlflow.start_run`, which would change its status and end it on exit.
        """
        import mlflow
        from mlflow.tracking import fluent
        from mlflow.tracking._tracking_service import utils as tracking_utils

        with _FLUENT_LOCK:
            previous_uri = tracking_utils._tracking_uri
            previous_env = os.environ.get("MLFLOW_TRACKING_URI")
            active = fluent.ActiveRun(self.client.get_run(self.run_id))
            stack = fluent._active_run_stack.get()
            mlflow.set_tracking_uri(self.tracking_uri)
            stack.append(active)
            try:
                yield
            finally:
                for index in range(len(stack) - 1, -1, -1):
                    if stack[index] is active:
                        del stack[index]
                mlflow.set_tracking_uri(previous_uri)
                if previous_env is None:
                    os.environ.pop("MLFLOW_TRACKING_URI", None)
                else:
                    os.environ["MLFLOW_TRACKING_URI"] = previous_env

    def _merge_overflow(self, overflow: dict[str, str]) -> None:
        # Uploads keep their order, so the last file written holds every overlong value so far.
        self._overflow.update(overflow)
        self.log_dict(self._overflow, param_rules.OVERFLOW_ARTIFACT)


def error_message(exc_type: type[BaseException], exc: BaseException | None) -> str:
    """`Type: message` for the error tag; an exception whose str() fails still names its type."""
    try:
        text = str(exc)
    except Exception:
        text = "<message not printable>"
    return f"{exc_type.__name__}: {text}"[:5000]


def _check_metric_name(key: str) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_metric_name

    if not isinstance(key, str) or not key or len(key) > param_rules.MAX_KEY_LENGTH:
        raise ValueError(f"invalid metric name {key!r}: a non-empty string of at most 250 characters")
    try:
        _validate_metric_name(key)
    except MlflowException as error:
        raise ValueError(f"invalid metric name {key!r}: {error.message}") from None


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
