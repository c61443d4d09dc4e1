"""The train_sklearn job against RecordingTracker: what it logs, the baseline run, early errors."""

from __future__ import annotations

import pandas as pd
import pytest

from mlops_platform.config.train_sklearn import TrainSklearnConfig
from mlops_platform.data import DataError
from mlops_platform.errors import UserError
from mlops_platform.tracking import RecordingTracker
from mlops_platform.training import sklearn_job


def _config(**values) -> TrainSklearnConfig:
    return TrainSklearnConfig.parse({"cv_folds": 2, **values})


def _no_baseline(experiment_id: str, digest: str, task: str) -> None:
    return None


def test_classification_run_logs_metrics_artifacts_datasets_and_model():
    tracker = RecordingTracker()
    config = _config(dataset="wine", model="random_forest", n_estimators=15, registered_model_name="wine-rf")
    result = sklearn_job.run(config, tracker=tracker, find_baseline=_no_baseline)

    main_run, baseline_run = tracker.runs
    assert main_run.run_id == result.run_id and main_run.status == "FINISHED"
    assert main_run.tags["mlops.role"] == "candidate"
    assert main_run.tags["mlops.baseline_run_id"] == baseline_run.run_id == result.baseline_run_id
    assert main_run.options["use_env_run"] is True and main_run.options["entry_point"] == "train_sklearn"
    for name in (
        "cv_accuracy_mean", "cv_accuracy_std", "cv_f1_macro_mean", "cv_roc_auc_mean", "cv_log_loss_mean",
        "test_accuracy", "test_f1_macro", "test_roc_auc", "test_log_loss",
        "fit_seconds", "predict_latency_ms_per_row", "model_size_bytes",
    ):  # fmt: skip
        assert name in main_run.metrics, name
    assert main_run.history("test_accuracy")[0] > 0.85
    assert main_run.history("model_size_bytes")[0] > 1000
    for artifact in (
        "plots/confusion_matrix.png",
        "reports/classification_report.txt",
        "reports/feature_importances.csv",
        "plots/feature_importances.png",
        "reports/misclassified_test_samples.csv",
    ):
        assert artifact in main_run.artifacts, artifact
    assert main_run.config["model"] == "random_forest"
    assert main_run.params["estimator.model__n_estimators"] == "15"
    assert main_run.params["resolved.task"] == "classification"
    assert [d["context"] for d in main_run.datasets] == ["train", "test"]
    assert {d["name"] for d in main_run.datasets} == {"wine"}
    (model,) = main_run.models
    assert model.flavor == "sklearn" and model.registered_model_name == "wine-rf"
    assert model.signature is not None and len(model.input_example) == 5
    assert result.model_uri == model.model_uri
    # The frozen training profile travels in the model's folder: every input column, labels, predictions.
    profile = model.files["skew_profile.json"]
    assert list(profile["features"]) == list(model.input_example.columns)
    assert str(profile["rows"]) == main_run.params["data.n_train"]
    assert set(profile["label"]["frequencies"]) == {"0", "1", "2"}
    assert profile["predictions_split"] == "test" and "validation_predictions" in profile


def test_baseline_run_is_its_own_run_tagged_and_never_registered():
    tracker = RecordingTracker()
    sklearn_job.run(
        _config(dataset="wine", model="logreg", registered_model_name="wine-lr"),
        tracker=tracker,
        find_baseline=_no_baseline,
    )
    main_run, baseline_run = tracker.runs
    assert baseline_run.options["use_env_run"] is False
    # Each run's params say what it trained: a filter on params.model = 'logreg' finds only the candidate.
    assert (main_run.params["model"], baseline_run.params["model"]) == ("logreg", "baseline")
    assert baseline_run.config["model"] == "baseline" and baseline_run.config["registered_model_name"] is None
    assert "c" in main_run.params and "c" not in baseline_run.params
    # Only the hyperparameters logreg takes; config.json still has every field.
    assert not {"kernel", "gamma", "n_neighbors", "alpha"} & set(main_run.params)
    assert "kernel" in main_run.config
    assert baseline_run.tags["mlops.role"] == "baseline"
    assert baseline_run.tags["mlops.model"] == "baseline"
    assert baseline_run.tags["mlops.dataset_digest"] == main_run.tags["mlops.dataset_digest"]
    assert baseline_run.status == "FINISHED"
    assert baseline_run.models[0].registered_model_name is None
    assert baseline_run.history("test_accuracy")[0] < main_run.history("test_accuracy")[0]


def test_existing_baseline_is_reused():
    tracker = RecordingTracker()
    seen = []

    def finder(experiment_id: str, digest: str, task: str) -> str:
        seen.append((digest, task))
        return "existing-baseline"

    result = sklearn_job.run(_config(dataset="wine", model="knn"), tracker=tracker, find_baseline=finder)
    assert len(tracker.runs) == 1
    assert result.baseline_run_id == "existing-baseline"
    assert tracker.runs[0].tags["mlops.baseline_run_id"] == "existing-baseline"
    assert seen == [(tracker.runs[0].tags["mlops.dataset_digest"], "classification")]


def test_baseline_model_itself_and_opt_out_make_one_run():
    for values in ({"model": "baseline"}, {"model": "ridge", "baseline": False}):
        tracker = RecordingTracker()
        sklearn_job.run(_config(dataset="diabetes", **values), tracker=tracker, find_baseline=_no_baseline)
        assert len(tracker.runs) == 1, values
    assert tracker.runs[0].tags["mlops.role"] == "candidate"


def test_regression_logs_residuals_and_coefficients():
    tracker = RecordingTracker()
    sklearn_job.run(
        _config(dataset="diabetes", model="ridge", alpha=1.0), tracker=tracker, find_baseline=_no_baseline
    )
    main_run, baseline_run = tracker.runs
    for name in ("cv_rmse_mean", "cv_r2_mean", "cv_mae_std", "test_rmse", "test_mae", "test_r2"):
        assert name in main_run.metrics, name
    assert "plots/residuals.png" in main_run.artifacts
    assert "reports/feature_importances.csv" in main_run.artifacts
    assert "plots/confusion_matrix.png" not in main_run.artifacts
    assert main_run.history("test_r2")[0] > baseline_run.history("test_r2")[0]
    assert main_run.history("test_rmse")[0] < main_run.history("cv_rmse_mean")[0] * 1.5


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"dataset": "diabetes", "model": "svc"}, "model='svc' does not fit dataset 'diabetes'"),
        (
            {"dataset": "diabetes", "model": "random_forest", "class_weight": "balanced"},
            "class_weight does not apply to regression model='random_forest'",
        ),
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
        ({"dataset": "wine", "cv_folds": 10, "test_fraction": 0.9}, "fewer than cv_folds=10"),
    ],
)
def test_user_errors_come_before_any_run(values, message):
    tracker = RecordingTracker()
    with pytest.raises(UserError, match=message):
        sklearn_job.run(_config(**values), tracker=tracker, find_baseline=_no_baseline)
    assert tracker.runs == []


def test_csv_dataset_with_string_labels(tmp_path):
    frame = pd.DataFrame(
        {
            "x1": [0.1 * i for i in range(60)],
            "x2": [(-1) ** i * i for i in range(60)],
            "kind": ["lo", "hi"] * 30,
        }
    )
    path = tmp_path / "toy.csv"
    frame.to_csv(path, index=False)
    tracker = RecordingTracker()
    sklearn_job.run(
        _config(dataset=f"csv:{path}", target="kind", model="hist_gb", max_iter=10),
        tracker=tracker,
        find_baseline=_no_baseline,
    )
    main_run = tracker.last_run
    assert main_run.tags["mlops.dataset"] == "toy"
    assert main_run.datasets[0]["targets"] == "kind"
    assert "test_roc_auc" in main_run.metrics


def test_csv_without_target_is_a_data_error(tmp_path):
    path = tmp_path / "toy.csv"
    pd.DataFrame({"a": [1, 2], "b": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="needs target"):
        sklearn_job.prepare(_config(dataset=f"csv:{path}"))


def test_estimator_params_are_scalars_with_nested_estimators_by_class():
    from mlops_platform.training.sklearn_models import build_pipeline

    params = sklearn_job.estimator_params(build_pipeline("voting", "classification", {}, 0))
    assert params["estimator.model"] == "VotingClassifier"
    assert params["estimator.model__voting"] == "soft"
    assert all(isinstance(value, bool | int | float | str) for value in params.values())


def test_validation_split_is_scored_when_asked():
    tracker = RecordingTracker()
    sklearn_job.run(
        _config(dataset="wine", model="logreg", val_fraction=0.2, baseline=False),
        tracker=tracker,
        find_baseline=_no_baseline,
    )
    (main_run,) = tracker.runs
    assert [d["context"] for d in main_run.datasets] == ["train", "validation", "test"]
    assert {"val_accuracy", "val_f1_macro", "val_roc_auc", "val_log_loss"} <= set(main_run.metrics)
    assert int(main_run.params["data.n_validation"]) == len(main_run.datasets[1]["frame"]) > 0


def test_mixed_table_trains_with_preprocessing_inside_the_model(tmp_path):
    import cellar
    import numpy as np

    path = tmp_path / "cellar.csv"
    cellar.wine_cellar().to_csv(path, index=False)
    tracker = RecordingTracker()
    config = _config(dataset=f"csv:{path}", target=cellar.TARGET, model="logreg", baseline=False)
    sklearn_job.run(config, tracker=tracker, find_baseline=_no_baseline)
    run = tracker.last_run
    assert run.history("test_accuracy")[0] > 0.9
    roles = run.artifacts["column_roles.json"]
    assert "bottle_id" in str(roles) and run.params["data.dropped"] == "bottle_id"
    assert run.params["data.n_categorical"] == "1" and run.params["data.n_boolean"] == "1"
    (model,) = run.models
    inputs = model.signature.inputs
    assert [column.name for column in inputs.inputs] == [
        c for c in cellar.wine_cellar().columns if c not in ("bottle_id", cellar.TARGET)
    ]
    assert all(column.required for column in inputs.inputs)
    types = {column.name: column.type.name for column in inputs.inputs}
    assert types["region"] == "string" and types["organic"] == "boolean" and types["alcohol"] == "double"
    assert model.kwargs["metadata"]["column_roles"]["categorical"] == ["region"]

    pipeline = model.model
    row = model.input_example.iloc[[0]].copy()
    row["alcohol"], row["region"] = np.nan, None
    unseen = row.assign(region="atlantis")
    assert pipeline.predict(row)[0] in cellar.CULTIVARS
    assert pipeline.predict(unseen)[0] in cellar.CULTIVARS


def test_impute_none_with_a_model_that_cannot_take_nan_fails_before_a_run(tmp_path):
    import cellar

    path = tmp_path / "cellar.csv"
    cellar.wine_cellar().to_csv(path, index=False)
    with pytest.raises(DataError, match=r"impute=none leaves missing numbers in alcohol, magnesium"):
        sklearn_job.prepare(_config(dataset=f"csv:{path}", target=cellar.TARGET, model="svc", impute="none"))


def test_second_job_in_an_experiment_reuses_its_baseline(sqlite_tracking_uri, fresh_experiment):
    from mlflow import MlflowClient

    from mlops_platform.config.train_sklearn import TrainSklearnConfig
    from mlops_platform.training import sklearn_job

    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    common = {"dataset": "wine", "cv_folds": 2, "experiment": name}
    first = sklearn_job.run(TrainSklearnConfig.parse({**common, "model": "logreg"}))
    second = sklearn_job.run(TrainSklearnConfig.parse({**common, "model": "knn"}))

    client = MlflowClient(sqlite_tracking_uri)
    baselines = client.search_runs([experiment_id], filter_string="tags.`mlops.role` = 'baseline'")
    assert [run.info.run_id for run in baselines] == [first.baseline_run_id] == [second.baseline_run_id]
    candidates = client.search_runs([experiment_id], filter_string="tags.`mlops.role` = 'candidate'")
    assert {run.info.run_id for run in candidates} == {first.run_id, second.run_id}
    assert all(run.info.status == "FINISHED" for run in [*baselines, *candidates])
