"""Typed, paged run search: the plain `search_runs(...).iloc[0]` without its traps.

`MlflowClient.search_runs` returns one page; callers that forget the page token silently see the first
1,000 runs. Here every page is followed up to `max_results`, run status is filtered by default, and a
malformed filter or an unknown experiment is a UserError that names it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops_platform.errors import UserError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Run

# MLflow's server-side cap on one page; larger requests are refused.
MAX_PAGE_SIZE = 1000
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
# The status value that means "no status filter".
ANY_STATUS = "ANY"


class SearchError(UserError):
    """A search could not run: bad filter, unknown experiment, bad status or order."""


@dataclass(frozen=True)
class RunRecord:
    """One run as plain values: what a search returns."""

    run_id: str
    run_name: str | None
    experiment_id: str
    status: str
    start_time: int | None  # epoch milliseconds, as MLflow stores it
    end_time: int | None
    artifact_uri: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # Logged models this run produced (run.outputs), newest step first.
    model_ids: tuple[str, ...] = ()
    user_id: str | None = None  # run.info.user_id

    @property
    def created_by(self) -> str | None:
        """Who created the run, as the UI shows it (MLflow's mlflow.user tag), else its user_id."""
        from mlops_platform.tracking.tags import MLFLOW_USER_TAG

        return self.tags.get(MLFLOW_USER_TAG) or self.user_id or None

    @classmethod
    def from_run(cls, run: Run) -> RunRecord:
        outputs = run.outputs.model_outputs if run.outputs is not None else []
        ordered = sorted(outputs, key=lambda output: output.step, reverse=True)
        return cls(
            run_id=run.info.run_id,
            run_name=run.info.run_name,
            experiment_id=run.info.experiment_id,
            status=run.info.status,
            start_time=run.info.start_time,
            end_time=run.info.end_time,
            artifact_uri=run.info.artifact_uri,
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            tags=dict(run.data.tags),
            model_ids=tuple(dict.fromkeys(output.model_id for output in ordered)),
            user_id=run.info.user_id,
        )

    def metric(self, name: str) -> float | None:
        """The metric's latest value, or None when it is missing or NaN (NaN cannot be ranked)."""
        value = self.metrics.get(name)
        if value is None or math.isnan(value):
            return None
        return value

    def as_row(self) -> dict[str, Any]:
        """A flat row in `mlflow.search_runs` column style: `params.x`, `metrics.y`, `tags.z`."""
        row: dict[str, Any] = {
            "run_id": self.run_id,
            "run_name": self.run_name,
            "experiment_id": self.experiment_id,
            "status": self.status,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "artifact_uri": self.artifact_uri,
            "model_ids": ",".join(self.model_ids),
        }
        row.update({f"metrics.{k}": v for k, v in sorted(self.metrics.items())})
        row.update({f"params.{k}": v for k, v in sorted(self.params.items())})
        row.update({f"tags.{k}": v for k, v in sorted(self.tags.items())})
        return row


def client_for(tracking_uri: str | None = None) -> MlflowClient:
    """An explicit client on the resolved tracking URI (never MLflow's global state)."""
    from mlflow import MlflowClient

    from mlops_platform.settings import resolve_tracking_uri

    return MlflowClient(resolve_tracking_uri(tracking_uri))


def find_baseline_run(
    experiment_id: str, dataset_digest: str, task: str, tracking_uri: str | None = None
) -> str | None:
    """The id of a FINISHED baseline run of the same data and task in the experiment, or None (read-only)."""
    from mlops_platform.tracking.tags import DATASET_DIGEST_TAG, ROLE_TAG, TASK_TAG

    runs = client_for(tracking_uri).search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{ROLE_TAG}` = 'baseline' AND tags.`{DATASET_DIGEST_TAG}` = '{dataset_digest}' "
            f"AND tags.`{TASK_TAG}` = '{task}' AND attributes.status = 'FINISHED'"
        ),
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def is_bad_request(error: Exception) -> bool:
    """True for MLflow's "your input is wrong" errors, decided by error code (never by message text)."""
    from mlflow.exceptions import MlflowException

    return isinstance(error, MlflowException) and error.error_code in (
        "INVALID_PARAMETER_VALUE",
        "BAD_REQUEST",
        "INVALID_STATE",
    )


def is_not_found(error: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(error, MlflowException) and error.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def resolve_experiment_ids(client: MlflowClient, experiments: str | Sequence[str]) -> list[str]:
    """Experiment names or ids -> ids; an unknown one is a SearchError naming it."""
    names = [experiments] if isinstance(experiments, str) else list(experiments)
    if not names:
        raise SearchError("no experiment given: pass at least one experiment name or id")
    ids = []
    for name in names:
        experiment = client.get_experiment_by_name(name)
        if experiment is None and str(name).isdigit():
            try:
                experiment = client.get_experiment(str(name))
            except Exception as error:
                if not is_not_found(error) and not is_bad_request(error):
                    raise
                experiment = None
        if experiment is None:
            raise SearchError(f"unknown experiment {name!r}: no experiment has that name or id")
        ids.append(experiment.experiment_id)
    return ids


def status_clause(status: str | None) -> str:
    """The filter clause for a run status; "ANY" or None filters nothing."""
    if status is None or status.upper() == ANY_STATUS:
        return ""
    if status.upper() not in RUN_STATUSES:
        raise SearchError(f"invalid status {status!r}: use one of {', '.join((*RUN_STATUSES, ANY_STATUS))}")
    return f"attributes.status = '{status.upper()}'"


def children_clause(parent_run_id: str | None) -> str:
    """The filter clause for the child runs of one parent (a sweep's trials); None filters nothing."""
    if not parent_run_id:
        return ""
    if not re.fullmatch(r"[0-9A-Za-z_-]+", parent_run_id):
        raise SearchError(f"invalid parent run id {parent_run_id!r}: letters, digits, '-' and '_' only")
    return f"tags.`mlflow.parentRunId` = '{parent_run_id}'"


def entry_point_clause(entry_point: str | None) -> str:
    """The filter clause for runs one of our jobs made (its mlops.entry_point tag); None filters nothing."""
    if not entry_point:
        return ""
    from mlops_platform.tracking.tags import ENTRY_POINT_TAG

    if not re.fullmatch(r"[0-9A-Za-z_-]+", entry_point):
        raise SearchError(f"invalid entry point {entry_point!r}: letters, digits, '-' and '_' only")
    return f"tags.`{ENTRY_POINT_TAG}` = '{entry_point}'"


def combine_filters(*clauses: str) -> str:
    """AND together the non-empty clauses (MLflow's filter grammar has no OR and no parentheses)."""
    return " AND ".join(clause.strip() for clause in clauses if clause and clause.strip())


def iter_runs(
    client: MlflowClient,
    experiment_ids: list[str],
    filter_string: str = "",
    order_by: Sequence[str] | None = None,
    page_size: int = MAX_PAGE_SIZE,
) -> Iterator[Run]:
    """Every matching run, page by page, following page tokens until the server has no more."""
    for page in iter_pages(client, experiment_ids, filter_string, order_by, page_size):
        yield from page


def iter_pages(
    client: MlflowClient,
    experiment_ids: list[str],
    filter_string: str = "",
    order_by: Sequence[str] | None = None,
    page_size: int = MAX_PAGE_SIZE,
) -> Iterator[Any]:
    """The search's pages (PagedList of Run, `.token` set while there are more); bad filters are a
    SearchError."""
    token = None
    while True:
        try:
            page = client.search_runs(
                experiment_ids,
                filter_string=filter_string,
                order_by=list(order_by or []),
                max_results=page_size,
                page_token=token,
            )
        except Exception as error:
            if is_bad_request(error):
                order = list(order_by or [])
                raise SearchError(
                    f"invalid search (filter {filter_string!r}, order {order}): {error.message}"
                ) from None
            raise
        yield page
        token = page.token
        if not token:
            return


def search_runs(
    experiments: str | Sequence[str],
    filter_string: str = "",
    order_by: Sequence[str] | None = None,
    max_results: int | None = None,
    status: str | None = "FINISHED",
    *,
    tracking_uri: str | None = None,
    page_size: int = MAX_PAGE_SIZE,
    client: MlflowClient | None = None,
) -> list[RunRecord]:
    """Search runs across every page.

    Args:
        experiments: one experiment name or id, or several.
        filter_string: an MLflow filter, e.g. `params.lr = '0.1' and metrics.val_acc > 0.9`.
        order_by: e.g. ["metrics.val_f1_macro DESC"].
        max_results: stop after this many runs; None means all of them (every page is followed).
        status: only runs with this status ("FINISHED" by default); "ANY" or None for all.
        tracking_uri: the server; None resolves it from the environment.
        page_size: runs per request (at most 1,000).
        client: an existing client to reuse instead of tracking_uri.
    """
    if max_results is not None and max_results < 1:
        raise SearchError(f"invalid max_results={max_results}: must be at least 1")
    client = client or client_for(tracking_uri)
    experiment_ids = resolve_experiment_ids(client, experiments)
    combined = combine_filters(status_clause(status), filter_string)
    page_size = max(1, min(page_size, MAX_PAGE_SIZE, max_results or MAX_PAGE_SIZE))
    records: list[RunRecord] = []
    for run in iter_runs(client, experiment_ids, combined, order_by, page_size):
        records.append(RunRecord.from_run(run))
        if max_results is not None and len(records) >= max_results:
            break
    return records


def runs_frame(
    experiments: str | Sequence[str],
    filter_string: str = "",
    order_by: Sequence[str] | None = None,
    max_results: int | None = None,
    status: str | None = "FINISHED",
    **kwargs: Any,
) -> pd.DataFrame:
    """`search_runs` as a DataFrame: one row per run, `params.*`, `metrics.*` and `tags.*` columns."""
    import pandas as pd

    records = search_runs(experiments, filter_string, order_by, max_results, status, **kwargs)
    columns = ["run_id", "run_name", "experiment_id", "status", "start_time", "end_time", "artifact_uri"]
    frame = pd.DataFrame([record.as_row() for record in records])
    if frame.empty:
        return pd.DataFrame(columns=[*columns, "model_ids"])
    for column in ("start_time", "end_time"):
        frame[column] = pd.to_datetime(frame[column], unit="ms", utc=True)
    return frame
