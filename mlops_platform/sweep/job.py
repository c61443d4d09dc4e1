"""The sweep job (`mlflow run . -e sweep`, `mlops sweep run`), `mlops sweep worker` and `status`.

`run`: the config was validated (trainer parameters, metric, space) before this is called; the storage
is opened and the study name checked before the parent run exists. The parent run (the one `mlflow
run` made, or a new one) records the sweep; the study records the parent, so workers on other hosts
(`mlops sweep worker --study NAME --storage URL`) nest their trials under it. This process then works
on the study like any worker, and when every trial of the budget has ended it logs the summary and, with
`promote_to`, promotes the best child through the usual gates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from mlops_platform.config.sweep import SweepConfig
from mlops_platform.errors import UserError
from mlops_platform.sweep.spec import SweepSpec
from mlops_platform.sweep.storage import open_storage, redact, resolve_storage_url
from mlops_platform.sweep.summary import SweepSummary, log_summary, parent_run_link, summarize
from mlops_platform.tracking.interface import Run, Tracker
from mlops_platform.tracking.tags import ROLE_TAG, STORAGE_TAG, STUDY_TAG, decision_tags

log = logging.getLogger(__name__)
ENTRY_POINT = "sweep"


@dataclass(frozen=True)
class SweepResult:
    parent_run_id: str
    experiment_id: str
    summary: SweepSummary
    promotion: Any = None  # the PromotionDecision with promote_to


def run(config: SweepConfig, tracker: Tracker | None = None) -> SweepResult:
    """Create the study and the parent run, work on the study, summarize, promote; see the module doc."""
    import optuna

    from mlops_platform.sweep.study import create_study
    from mlops_platform.sweep.worker import stale_handler, work

    url = resolve_storage_url(config.storage)
    if tracker is None:
        from mlops_platform.tracking import Tracker as ServerTracker

        tracker = ServerTracker()
    storage = open_storage(
        url, config.heartbeat_interval, config.grace_period, on_stale=stale_handler(tracker.tracking_uri)
    )
    if config.study and config.study in optuna.get_all_study_names(storage):
        raise UserError(
            f"study={config.study!r} already exists in {redact(url)}; pick a new name, or join it with "
            f"`mlops sweep worker --study {config.study} --storage URL`"
        )
    with tracker.run(
        experiment=config.experiment,
        run_name=config.run_name or config.study or f"sweep-{config.trainer}",
        tags={ROLE_TAG: "sweep"},
        entry_point=ENTRY_POINT,
    ) as parent:
        from mlflow import MlflowClient

        name = config.study or f"sweep-{parent.run_id}"
        experiment_name = MlflowClient(tracker.tracking_uri).get_experiment(parent.experiment_id).name
        spec = SweepSpec.from_config(config, parent.run_id, experiment_name, tracker.tracking_uri)
        # `mlflow run` has logged the given values ("" for defaults) under the config's names already, so
        # the resolved study and storage get names of their own. A password never reaches a param.
        given_storage = redact(config.storage) if config.storage else config.storage
        parent.log_config({**config.to_params(), "storage": given_storage})
        parent.log_params({"sweep.study": name, "sweep.storage": redact(url), **config.space_params()})
        parent.log_dict(spec.space, "sweep/space.yaml")
        parent.set_tags({STUDY_TAG: name, STORAGE_TAG: redact(url)})
        study = create_study(storage, name, spec)
        print(
            f"sweep {name}: {config.n_trials} trials of trainer={config.trainer}, "
            f"parent run {parent.run_id}\n"
            f"join from any host: mlops sweep worker --study {name} --storage {redact(url)}"
        )
        work(study, spec, url, tracker, timeout=config.timeout)
        summary = summarize(study, spec)
        log_summary(parent, study, spec, summary, tracker.tracking_uri)
        link = parent_run_link(tracker.tracking_uri, parent.experiment_id, parent.run_id)
        print(summary.text(config.metric, link))
        promotion = promote(config, parent, summary, tracker.tracking_uri) if config.promote_to else None
        return SweepResult(parent.run_id, parent.experiment_id, summary, promotion)


def promote(config: SweepConfig, parent: Run, summary: SweepSummary, tracking_uri: str) -> Any:
    """The sweep's best child through promote_best's gates (champion, min_delta 0, baseline)."""
    from mlops_platform.registry.promote import promote_best
    from mlops_platform.registry.search import children_clause

    if summary.best_run_id is None:
        raise UserError(f"promote_to={config.promote_to!r}: the sweep has no complete trial to promote")
    parent.flush()
    decision = promote_best(
        experiment=parent.experiment_id,
        metric=config.metric,
        model_name=config.promote_to,
        mode=config.direction,
        filter_string=children_clause(parent.run_id),
        tracking_uri=tracking_uri,
    )
    parent.set_tags(decision_tags(decision.promoted, decision.reason, decision.version))
    parent.log_dict(decision.to_dict(), "promotion/decision.json")
    print(decision.summary())
    return decision


def worker(study_name: str, storage: str | None = None) -> Any:
    """Join a running study from any host: only the tracking URI (environment) and the storage URL."""
    from mlops_platform.sweep.worker import open_study, work
    from mlops_platform.tracking import Tracker as ServerTracker

    url = resolve_storage_url(storage)
    tracker = ServerTracker()
    study, spec = open_study(url, study_name, tracker.tracking_uri)
    result = work(study, spec, url, tracker)
    print(f"worker done: ran {result.ran} trial(s) of study {study_name}: {result.states}")
    return result


def status(study_name: str, storage: str | None = None) -> SweepSummary:
    """Trials by state, the best so far, and the parent run's link."""
    from mlflow import MlflowClient

    from mlops_platform.settings import resolve_tracking_uri
    from mlops_platform.sweep.study import load_study

    study, spec = load_study(open_storage(resolve_storage_url(storage)), study_name)
    summary = summarize(study, spec)
    uri = resolve_tracking_uri()
    parent = MlflowClient(uri).get_run(spec.parent_run_id)
    print(summary.text(spec.metric, parent_run_link(uri, parent.info.experiment_id, spec.parent_run_id)))
    return summary
