"""The promote job: `mlops promote ...` and `mlflow run . -e promote -P ...`."""

from __future__ import annotations

import json
import os

from mlops_platform.config.promote import PromoteConfig


def record_in_env_run(decision_dict: dict, tracking_uri: str | None) -> None:
    """Under `mlflow run`, keep the decision in the job's own run (tags + decision.json)."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return
    from mlops_platform.registry.search import client_for

    client = client_for(tracking_uri)
    client.set_tag(run_id, "mlops.role", "promotion")
    client.set_tag(run_id, "mlops.promote.promoted", str(decision_dict["promoted"]).lower())
    client.set_tag(run_id, "mlops.promote.reason", decision_dict["reason"][:5000])
    if decision_dict.get("version"):
        client.set_tag(run_id, "mlops.promote.version", decision_dict["version"])
    client.log_dict(run_id, decision_dict, "promotion/decision.json")


def run(config: PromoteConfig) -> None:
    from mlops_platform.registry.promote import promote_best
    from mlops_platform.registry.search import children_clause, combine_filters

    decision = promote_best(
        experiment=config.experiment,
        metric=config.metric,
        model_name=config.model_name,
        mode=config.mode,
        alias=config.alias,
        min_delta=config.min_delta,
        filter_string=combine_filters(config.filter_string or "", children_clause(config.parent_run)),
        max_model_size_mb=config.max_model_size_mb,
        dry_run=config.dry_run,
        tracking_uri=config.tracking_uri,
        lock_uri=config.lock_uri,
    )
    print(decision.summary())
    print(json.dumps(decision.to_dict(), indent=2))
    record_in_env_run(decision.to_dict(), config.tracking_uri)
