"""The promote job: `mlops promote ...` and `mlflow run . -e promote -P ...`."""

from __future__ import annotations

import json
import os

from mlops_platform.config.promote import PromoteConfig
from mlops_platform.tracking.tags import ROLE_TAG, decision_tags


def record_in_env_run(decision_dict: dict, tracking_uri: str | None) -> None:
    """Under `mlflow run`, keep the decision in the job's own run (tags + decision.json)."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return
    from mlops_platform.registry.search import client_for

    client = client_for(tracking_uri)
    tags = {
        ROLE_TAG: "promotion",
        **decision_tags(decision_dict["promoted"], decision_dict["reason"], decision_dict.get("version")),
    }
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    client.log_dict(run_id, decision_dict, "promotion/decision.json")


def run(config: PromoteConfig) -> None:
    from mlops_platform.registry.promote import promote_best
    from mlops_platform.registry.search import children_clause, combine_filters, entry_point_clause

    decision = promote_best(
        experiment=config.experiment,
        metric=config.metric,
        model_name=config.model_name,
        mode=config.mode,
        alias=config.alias,
        min_delta=config.min_delta,
        filter_string=combine_filters(
            config.filter_string or "",
            children_clause(config.parent_run),
            entry_point_clause(config.require_entry_point),
        ),
        max_model_size_mb=config.max_model_size_mb,
        dry_run=config.dry_run,
        tracking_uri=config.tracking_uri,
        lock_uri=config.lock_uri,
    )
    print(decision.summary())
    print(json.dumps(decision.to_dict(), indent=2))
    record_in_env_run(decision.to_dict(), config.tracking_uri)
