"""The promote job: `mlops promote ...` and `mlflow run . -e promote -P ...`."""

from __future__ import annotations

import json

from mlops_platform.config.promote import PromoteConfig
from mlops_platform.tracking.env_run import env_run_id
from mlops_platform.tracking.tags import ROLE_TAG, decision_tags


def record_in_env_run(decision_dict: dict, tracking_uri: str | None) -> None:
    """Under `mlflow run`, keep the decision in the job's own run (tags + decision.json)."""
    run_id = env_run_id()
    if run_id is None:
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
    from mlops_platform.registry.promote import PromotionRequest, run_promotion

    decision = run_promotion(
        PromotionRequest.from_config(config), tracking_uri=config.tracking_uri, lock_uri=config.lock_uri
    )
    print(decision.summary())
    print(json.dumps(decision.to_dict(), indent=2))
    record_in_env_run(decision.to_dict(), config.tracking_uri)
