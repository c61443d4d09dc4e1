"""Find the best run: FINISHED, has the metric, has a logged model that finished uploading.

Query shape matters at 10,000 runs. MLflow orders by a metric through a join on its latest-metrics
table; on SQLite a top-1 ordered by a metric nested-loops that join unless the query also filters on
status AND on the same metric (measured by benchmarks/search_promote.py at 10,000 runs on SQLite: no
filter 12.8 s, status filter only 12.9 s, metric filter only 11.9 s, both 0.19 s; PostgreSQL answers
every shape in 0.2-0.4 s). So the search here always carries both: `attributes.status = 'FINISHED'`
and `metrics.<m> >= -<max float>`, which keeps every value (MLflow stores -inf as the lowest float)
and drops runs without the metric before they reach us.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mlops_platform.registry.search import (
    MAX_PAGE_SIZE,
    RunRecord,
    SearchError,
    client_for,
    combine_filters,
    is_not_found,
    iter_pages,
    iter_runs,
    resolve_experiment_ids,
    status_clause,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

Mode = Literal["max", "min"]
# Candidates fetched per request while looking for the first run that qualifies.
BEST_PAGE_SIZE = 50
# The lowest float MLflow stores (it writes -inf as this), so `>=` it keeps every value. Spelled out
# in digits because MLflow's filter parser rejects exponent notation.
LOWEST_FLOAT = f"{-sys.float_info.max:.0f}"


class NoQualifyingRunError(SearchError):
    """No run qualifies as best; the message names the metric and the experiment."""


@dataclass(frozen=True)
class BestRun:
    """The winning run, its metric value and the logged model that would be promoted."""

    run: RunRecord
    metric: str
    mode: Mode
    value: float
    model_id: str

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_id}"


def resolve_mode(metric: str, mode: str | None) -> Mode:
    """`mode` when given; otherwise the metric's direction from mlops_platform.evaluation's table."""
    if mode is not None:
        if mode not in ("max", "min"):
            raise SearchError(f"invalid mode {mode!r}: use 'max' or 'min'")
        return mode  # type: ignore[return-value]
    try:
        from mlops_platform.evaluation import METRIC_DIRECTIONS
    except ImportError:  # the table is optional: without it the caller must say
        METRIC_DIRECTIONS = {}
    direction = METRIC_DIRECTIONS.get(metric)
    if direction is None:
        raise SearchError(f"metric {metric!r} has no known direction: pass mode='max' or mode='min'")
    return direction  # type: ignore[return-value]


def filter_number(value: float) -> str:
    """`value` as a number MLflow's filter parser takes (no exponent) that parses back to `value`."""
    from decimal import Decimal

    text = repr(float(value))
    return format(Decimal(text), "f") if "e" in text or "E" in text else text


def metric_key(metric: str) -> str:
    """The metric as a filter/order key; backticks allow dots and dashes in names."""
    if "`" in metric:
        raise SearchError(f"invalid metric name {metric!r}: backticks are not allowed")
    return f"metrics.`{metric}`"


def ranked_query(
    metric: str, mode: Mode, filter_string: str = "", status: str = "FINISHED"
) -> tuple[str, list[str]]:
    """The filter and order of a best-first search (the fast shape, see the module docstring)."""
    key = metric_key(metric)
    filter_ = combine_filters(status_clause(status), f"{key} >= {LOWEST_FLOAT}", filter_string)
    direction = "DESC" if mode == "max" else "ASC"
    return filter_, [f"{key} {direction}", "attributes.start_time ASC"]


def ready_model_id(client: MlflowClient, run: RunRecord, known_ready: set[str] | None = None) -> str | None:
    """The run's newest logged model whose upload finished (status READY), or None.

    `known_ready` remembers READY models across calls (READY is final), so promote_best's re-check
    round does not fetch the same model again.
    """
    from mlflow.entities import LoggedModelStatus

    known_ready = known_ready if known_ready is not None else set()
    for model_id in run.model_ids:
        if model_id in known_ready:
            return model_id
        try:
            model = client.get_logged_model(model_id)
        except Exception as error:
            if is_not_found(error):  # deleted since the run linked it
                continue
            raise
        if model.status == LoggedModelStatus.READY:
            known_ready.add(model_id)
            return model_id
    return None


def iter_ranked(
    client: MlflowClient,
    experiment_ids: list[str],
    metric: str,
    mode: Mode,
    filter_string: str = "",
    page_size: int = BEST_PAGE_SIZE,
):
    """FINISHED runs that have the metric, best first, as RunRecords."""
    filter_, order_by = ranked_query(metric, mode, filter_string)
    for run in iter_runs(client, experiment_ids, filter_, order_by, page_size):
        record = RunRecord.from_run(run)
        if record.metric(metric) is not None:
            yield record


def ranked_here(records: Iterable[RunRecord], metric: str, mode: Mode) -> list[RunRecord]:
    """`records` that have the metric, in the ranked search's order (value, then start time with
    runs without one last, then run id), sorted here instead of by the server."""
    sign = -1.0 if mode == "max" else 1.0
    kept = [record for record in records if record.metric(metric) is not None]
    return sorted(
        kept,
        key=lambda r: (sign * r.metric(metric), r.start_time is None, r.start_time or 0, r.run_id),  # type: ignore[operator]
    )


def few_ranked(
    client: MlflowClient,
    experiment_ids: list[str],
    metric: str,
    mode: Mode,
    filter_string: str,
    limit: int = MAX_PAGE_SIZE,
) -> list[RunRecord] | None:
    """The FINISHED runs matching `filter_string` best first, when they fit in one page of `limit`;
    None when there are more.

    For a filter that bounds the metric (promote_best's runs that reach the champion): a search ordered
    by a metric makes MLflow join and sort every run of the experiment that has it, while ordered by
    start time the server only reads the runs that match (100,000 runs, load average 6-8: SQLite 1.8 s
    against 0.3 s, PostgreSQL 0.19 s against 0.08 s), so the few are ranked here.
    """
    filter_ = combine_filters(status_clause("FINISHED"), filter_string)
    page = next(iter_pages(client, experiment_ids, filter_, ["attributes.start_time ASC"], limit))
    if page.token:
        return None
    return ranked_here((RunRecord.from_run(run) for run in page), metric, mode)


def find_best_run(
    experiment: str | Sequence[str],
    metric: str,
    mode: Mode | None = None,
    filter_string: str = "",
    *,
    tracking_uri: str | None = None,
    client: MlflowClient | None = None,
    page_size: int = BEST_PAGE_SIZE,
) -> BestRun:
    """The best FINISHED run by `metric` that has a READY logged model.

    Runs without the metric (or with NaN), runs that are not FINISHED and runs without a logged model
    are skipped. Ties go to the earlier run, so the answer is stable.

    Args:
        experiment: experiment name or id (or several).
        metric: the metric to rank by, e.g. "val_f1_macro".
        mode: "max" or "min"; None takes the direction from mlops_platform.evaluation.METRIC_DIRECTIONS.
        filter_string: an extra MLflow filter (params, tags, metrics), ANDed with the status filter.

    Raises:
        NoQualifyingRunError: nothing qualifies; the message says whether the metric exists at all.
        SearchError: unknown experiment, malformed filter, bad mode.
    """
    resolved_mode = resolve_mode(metric, mode)
    client = client or client_for(tracking_uri)
    experiment_ids = resolve_experiment_ids(client, experiment)
    return best_in(client, experiment_ids, metric, resolved_mode, filter_string, page_size, label=experiment)


def best_in(
    client: MlflowClient,
    experiment_ids: list[str],
    metric: str,
    mode: Mode,
    filter_string: str = "",
    page_size: int = BEST_PAGE_SIZE,
    exclude_model_ids: frozenset[str] = frozenset(),
    label: str | Sequence[str] | None = None,
    known_ready: set[str] | None = None,
    candidates: Iterable[RunRecord] | None = None,
) -> BestRun:
    """find_best_run on resolved experiment ids; runs whose model is in `exclude_model_ids` are skipped
    (promote_best passes the models that were rolled back). `label` names the experiment in errors.
    `candidates`: the ranked runs to pick from (few_ranked), instead of the ranked search."""
    skipped_without_model = skipped_excluded = 0
    if candidates is None:
        candidates = iter_ranked(client, experiment_ids, metric, mode, filter_string, page_size)
    for record in candidates:
        model_id = ready_model_id(client, record, known_ready)
        if model_id is None:
            skipped_without_model += 1
            continue
        if model_id in exclude_model_ids:
            skipped_excluded += 1
            continue
        return BestRun(record, metric, mode, record.metric(metric), model_id)
    if skipped_excluded and not skipped_without_model:
        raise NoQualifyingRunError(
            f"every qualifying run in experiment {label or experiment_ids!r} by {metric!r} has a model "
            f"version that was rolled back ({skipped_excluded} run(s))"
        )
    raise NoQualifyingRunError(
        no_run_message(
            client, experiment_ids, label or experiment_ids, metric, filter_string, skipped_without_model
        )
    )


def no_run_message(
    client: MlflowClient,
    experiment_ids: list[str],
    experiment: str | Sequence[str],
    metric: str,
    filter_string: str,
    skipped_without_model: int,
) -> str:
    """Why nothing qualified, in words that name the metric and the experiment."""
    where = f"experiment {experiment!r}" + (f" with filter {filter_string!r}" if filter_string else "")
    if skipped_without_model:
        return (
            f"no FINISHED run in {where} has both metric {metric!r} and a logged model "
            f"({skipped_without_model} run(s) with the metric have no READY logged model)"
        )
    any_status = client.search_runs(
        experiment_ids, filter_string=f"{metric_key(metric)} >= {LOWEST_FLOAT}", max_results=1
    )
    if not any_status:
        return f"no run in experiment {experiment!r} has metric {metric!r}"
    return f"no FINISHED run in {where} has metric {metric!r}"


def top_runs(
    experiment: str | Sequence[str],
    metric: str,
    limit: int = 50,
    mode: Mode | None = None,
    filter_string: str = "",
    *,
    tracking_uri: str | None = None,
    client: MlflowClient | None = None,
) -> list[RunRecord]:
    """The `limit` best FINISHED runs by `metric` (ties: the earlier run first), model or not.

    The query has find_best_run's shape (status and metric filter ANDed with `filter_string`), which
    SQLite answers in ~0.3 s at 20,000 runs where the plain `order_by` with a param filter takes 15 s
    (benchmarks/scale.py).
    """
    from mlops_platform.registry.search import search_runs

    if limit < 1:
        raise SearchError(f"invalid limit={limit}: must be at least 1")
    resolved_mode = resolve_mode(metric, mode)
    filter_, order_by = ranked_query(metric, resolved_mode, filter_string)
    return search_runs(
        experiment, filter_, order_by, limit, status=None, tracking_uri=tracking_uri, client=client,
        page_size=limit,
    )  # fmt: skip
