"""promote_best and rollback against the real servers (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import pytest

from mlops_platform.errors import UserError
from mlops_platform.registry import NoQualifyingRunError, RegistryError, SearchError, promote_best, rollback


def aliases(client, name: str) -> dict[str, str]:
    return dict(client.get_registered_model(name).aliases)


def version_runs(client, name: str) -> dict[str, str]:
    """version -> run id of every version of the model."""
    return {v.version: v.run_id for v in client.search_model_versions(f"name = '{name}'")}


def test_promotion_story(tracking_uri, experiment_name, run_factory, mlflow_client, model_name) -> None:
    # 30 runs with known metrics; only some have models, FAILED ones and model-less ones score higher.
    good = {value: run_factory(metrics={"val_acc": value}) for value in (0.70, 0.80, 0.75, 0.60, 0.85, 0.50)}
    for i in range(8):
        run_factory(metrics={"val_acc": 0.99}, status="FAILED", with_model=False)
        run_factory(metrics={"val_acc": 0.98}, with_model=False)
        run_factory(metrics={"train_loss": 0.1 * i}, with_model=False)
    assert (
        len(mlflow_client.search_runs([mlflow_client.get_experiment_by_name(experiment_name).experiment_id]))
        == 30
    )

    first = promote_best(experiment_name, "val_acc", model_name, "max")
    assert first.promoted and first.run_id == good[0.85] and first.value == 0.85
    assert first.champion_version is None and "no @champion yet" in first.reason
    assert aliases(mlflow_client, model_name) == {"champion": first.version}
    tags = mlflow_client.get_model_version(model_name, first.version).tags
    assert tags["mlops.metric"] == "val_acc" and float(tags["mlops.metric_value"]) == 0.85
    assert tags["mlops.run_id"] == good[0.85] and tags["mlops.promoted_at"] and tags["mlops.reason"]
    assert mlflow_client.get_model_version(model_name, first.version).source == first.model_uri

    again = promote_best(experiment_name, "val_acc", model_name, "max")
    assert not again.promoted and "already @champion" in again.reason and again.version == first.version
    assert version_runs(mlflow_client, model_name) == {first.version: good[0.85]}

    run_factory(metrics={"val_acc": 0.84})
    worse = promote_best(experiment_name, "val_acc", model_name, "max")
    assert not worse.promoted and worse.run_id == good[0.85]
    assert version_runs(mlflow_client, model_name) == {first.version: good[0.85]}

    better_run = run_factory(metrics={"val_acc": 0.90})
    preview = promote_best(experiment_name, "val_acc", model_name, "max", dry_run=True)
    assert preview.promoted and preview.dry_run and preview.version is None and preview.run_id == better_run
    assert aliases(mlflow_client, model_name) == {"champion": first.version}

    better = promote_best(experiment_name, "val_acc", model_name, "max")
    assert better.promoted and better.run_id == better_run and better.version != first.version
    assert better.champion_version == first.version and better.champion_value == 0.85
    assert aliases(mlflow_client, model_name) == {"champion": better.version, "previous": first.version}

    restored = rollback(model_name)
    assert (restored.from_version, restored.to_version) == (better.version, first.version)
    assert aliases(mlflow_client, model_name) == {"champion": first.version, "previous": better.version}
    assert mlflow_client.get_model_version_by_alias(model_name, "champion").run_id == good[0.85]
    assert "mlops.rolled_back_at" in mlflow_client.get_model_version(model_name, better.version).tags

    # The rollback holds: the demoted model is not promoted again.
    after = promote_best(experiment_name, "val_acc", model_name, "max")
    assert not after.promoted and after.run_id == good[0.85] and "already @champion" in after.reason
    # Rolling back again undoes the rollback and clears the mark.
    rollback(model_name)
    assert aliases(mlflow_client, model_name) == {"champion": better.version, "previous": first.version}
    assert "mlops.rolled_back_at" not in mlflow_client.get_model_version(model_name, better.version).tags
    assert not promote_best(experiment_name, "val_acc", model_name, "max").promoted


def test_baseline_gate(tracking_uri, experiment_name, run_factory, mlflow_client, model_name) -> None:
    # The best of several baselines is the bar: not the newest, not a FAILED one, not one without it.
    baseline = run_factory(metrics={"val_acc": 0.90}, tags={"mlops.role": "baseline"}, with_model=False)
    run_factory(metrics={"val_acc": 0.85}, tags={"mlops.role": "baseline"}, with_model=False)
    run_factory(metrics={"val_acc": 0.99}, tags={"mlops.role": "baseline"}, with_model=False, status="FAILED")
    run_factory(metrics={"other": 1.0}, tags={"mlops.role": "baseline"}, with_model=False)
    run_factory(metrics={"val_acc": 0.88})
    kept = promote_best(experiment_name, "val_acc", model_name, "max")
    assert (
        not kept.promoted and kept.baseline_run_id == baseline and "does not beat the baseline" in kept.reason
    )
    assert mlflow_client.search_registered_models(f"name = '{model_name}'") == []

    winner = run_factory(metrics={"val_acc": 0.93})
    promoted = promote_best(experiment_name, "val_acc", model_name, "max")
    assert promoted.promoted and promoted.run_id == winner and promoted.baseline_value == 0.90


def test_min_delta_mode_min_and_custom_alias(
    tracking_uri, experiment_name, run_factory, mlflow_client, model_name
):
    first = run_factory(metrics={"val_rmse": 2.0})
    run_factory(metrics={"val_rmse": 3.0})
    decision = promote_best(experiment_name, "val_rmse", model_name, "min", alias="prod", min_delta=0.1)
    assert decision.promoted and decision.run_id == first
    run_factory(metrics={"val_rmse": 1.95})  # better, but not by more than 0.1
    small = promote_best(experiment_name, "val_rmse", model_name, "min", alias="prod", min_delta=0.1)
    assert not small.promoted and "min_delta=0.1" in small.reason
    big = run_factory(metrics={"val_rmse": 1.5})
    promoted = promote_best(experiment_name, "val_rmse", model_name, "min", alias="prod", min_delta=0.1)
    assert promoted.promoted and promoted.run_id == big
    assert aliases(mlflow_client, model_name) == {"prod": promoted.version, "previous": decision.version}


def test_size_gate_and_filter(tracking_uri, experiment_name, run_factory, mlflow_client, model_name) -> None:
    run_factory(metrics={"val_acc": 0.9}, params={"family": "big"})
    small = run_factory(metrics={"val_acc": 0.8}, params={"family": "small"})
    too_big = promote_best(experiment_name, "val_acc", model_name, "max", max_model_size_mb=0.0001)
    assert not too_big.promoted and "over max_model_size_mb=0.0001" in too_big.reason
    chosen = promote_best(
        experiment_name,
        "val_acc",
        model_name,
        "max",
        filter_string="params.family = 'small'",
        max_model_size_mb=5,
    )
    assert chosen.promoted and chosen.run_id == small and "MB" in chosen.reason


def test_existing_version_is_reused(
    tracking_uri, experiment_name, run_factory, mlflow_client, model_name
) -> None:
    run_id = run_factory(metrics={"val_acc": 0.7})
    model_id = mlflow_client.get_run(run_id).outputs.model_outputs[0].model_id
    mlflow_client.create_registered_model(model_name)
    existing = mlflow_client.create_model_version(
        model_name, f"models:/{model_id}", run_id=run_id, model_id=model_id
    )
    decision = promote_best(experiment_name, "val_acc", model_name, "max")
    assert decision.promoted and decision.version == existing.version
    assert list(version_runs(mlflow_client, model_name)) == [existing.version]


def test_threads_promote_once(tracking_uri, experiment_name, run_factory, mlflow_client, model_name) -> None:
    best = run_factory(metrics={"val_acc": 0.9})
    run_factory(metrics={"val_acc": 0.8})
    decisions, errors = [], []

    def promote() -> None:
        try:
            decisions.append(promote_best(experiment_name, "val_acc", model_name, "max"))
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=promote) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(d.promoted for d in decisions) == 1  # the file lock serializes threads of one process
    assert mlflow_client.get_model_version_by_alias(model_name, "champion").run_id == best
    assert len(version_runs(mlflow_client, model_name)) == 1


def test_errors_name_the_problem(
    tracking_uri, experiment_name, run_factory, model_name, mlflow_client
) -> None:
    run_factory(metrics={"val_acc": 0.9})
    with pytest.raises(RegistryError, match="backslash"):
        promote_best(experiment_name, "val_acc", f"{model_name}\\", "max")
    with pytest.raises(Exception, match="RESOURCE_DOES_NOT_EXIST"):
        mlflow_client.get_registered_model(f"{model_name}\\")
    with pytest.raises(SearchError, match="unknown experiment 'nope-nope'"):
        promote_best("nope-nope", "val_acc", model_name, "max")
    with pytest.raises(SearchError, match=r"metrics\.val_acc >> 2"):
        promote_best(experiment_name, "val_acc", model_name, "max", filter_string="metrics.val_acc >> 2")
    with pytest.raises(NoQualifyingRunError, match="has metric 'val_missing'"):
        promote_best(experiment_name, "val_missing", model_name, "max")
    with pytest.raises(RegistryError, match="unknown registered model 'no-such-model'"):
        rollback("no-such-model")
    with pytest.raises(RegistryError, match="reserved"):
        promote_best(experiment_name, "val_acc", model_name, "max", alias="previous")
    promote_best(experiment_name, "val_acc", model_name, "max")
    with pytest.raises(RegistryError, match="no @previous"):
        rollback(model_name)
    with pytest.raises(UserError, match="min_delta"):
        promote_best(experiment_name, "val_acc", model_name, "max", min_delta=-1)


def test_request_from_the_job_config_checks_and_resolves() -> None:
    from mlops_platform.config.promote import PromoteConfig
    from mlops_platform.registry import PromotionRequest

    config = PromoteConfig.parse(
        {
            "experiment": "e",
            "model_name": "m",
            "metric": "val_rmse",
            "filter_string": "params.model = 'cnn'",
            "parent_run": "abc123",
            "require_entry_point": "train_torch",
        }
    )
    request = PromotionRequest.from_config(config)
    assert request.mode == "min"  # the metric's known direction
    assert request.filter_string == (
        "params.model = 'cnn' AND tags.`mlflow.parentRunId` = 'abc123' "
        "AND tags.`mlops.entry_point` = 'train_torch'"
    )
    assert (request.alias, request.min_delta, request.dry_run) == ("champion", 0.0, False)
    with pytest.raises(SearchError, match="invalid max_model_size_mb=0: must be > 0"):
        PromotionRequest("e", "val_acc", "m", "max", max_model_size_mb=0)
    with pytest.raises(SearchError, match="metric 'loss_x' has no known direction"):
        PromotionRequest("e", "loss_x", "m")
