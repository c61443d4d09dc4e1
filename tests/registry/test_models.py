"""registry/models.py: every registered model across pages, and one model's versions with their aliases."""

from __future__ import annotations

import pytest

from mlops_platform.registry import RegistryError, promote_best
from mlops_platform.registry.models import describe_model, iter_registered_models, latest_version


def test_every_model_is_listed_across_pages(mlflow_client, model_name) -> None:
    names = [f"{model_name}-{i}" for i in range(3)]
    for name in names:
        mlflow_client.create_registered_model(name)
    listed = [model.name for model in iter_registered_models(mlflow_client, page_size=1)]
    assert set(names) <= set(listed)
    assert len(listed) == len(set(listed))  # no page read twice
    assert [m.name for m in iter_registered_models(mlflow_client)] == listed


def test_a_model_is_described_with_its_aliases_and_promotion_tags(
    experiment_name, run_factory, mlflow_client, model_name
) -> None:
    run_factory(metrics={"val_acc": 0.7})
    first = promote_best(experiment_name, "val_acc", model_name, "max")
    best = run_factory(metrics={"val_acc": 0.9})
    second = promote_best(experiment_name, "val_acc", model_name, "max")

    described = describe_model(mlflow_client, model_name)
    assert described.aliases == {"champion": second.version, "previous": first.version}
    assert [row["version"] for row in described.versions] == [first.version, second.version]
    assert described.versions[1]["aliases"] == ["champion"] and described.versions[1]["run_id"] == best
    assert described.versions[1]["tags"]["mlops.metric"] == "val_acc"
    assert described.to_dict()["name"] == model_name
    [model] = [m for m in iter_registered_models(mlflow_client) if m.name == model_name]
    assert latest_version(model) == int(second.version)


def test_an_unknown_or_malformed_model_name_is_refused(mlflow_client, model_name) -> None:
    with pytest.raises(RegistryError, match=f"unknown registered model '{model_name}-none'"):
        describe_model(mlflow_client, f"{model_name}-none")
    with pytest.raises(RegistryError, match="backslash"):
        describe_model(mlflow_client, f"{model_name}\\")
