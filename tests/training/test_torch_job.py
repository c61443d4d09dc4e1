"""The PyTorch job end to end: in memory (RecordingTracker) for what it logs, on a real server for
resume after SIGKILL, and through the CLI / `mlflow run` for bad parameters and smoke tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mlops_platform.config.train_torch import TorchTrainConfig
from mlops_platform.data import DataError
from mlops_platform.errors import UserError
from mlops_platform.tracking import RecordingTracker
from mlops_platform.training import torch_job
from mlops_platform.training.checkpoint import load_checkpoint
from mlops_platform.training.torch_loop import EPOCH_METRICS, STEP_METRICS

REPO = Path(__file__).resolve().parents[2]
WINE = {"dataset": "wine", "model": "mlp", "hidden_sizes": "16", "epochs": 3, "batch_size": 16}
FINAL = ("test_loss", "test_accuracy", "test_f1_macro", "best_epoch")


@pytest.fixture(autouse=True)
def _restore_torch_globals():
    """The job sets process-wide torch state (threads, deterministic algorithms); put it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(False)


def run_recorded(**values):
    tracker = RecordingTracker()
    torch_job.run(TorchTrainConfig.parse({**WINE, **values}), tracker=tracker)
    return tracker.last_run


def test_job_logs_config_datasets_metrics_artifacts_and_a_serving_model():
    run = run_recorded(log_every_n_steps=2, sanity_check=True)
    assert run.status == "FINISHED"
    assert run.config["model"] == "mlp" and run.params["hidden_sizes"] == "16"
    assert run.run_name == "mlp-wine"  # readable by default, as sklearn runs are
    # Params say what this run trained: no CNN channels, no SGD momentum, no step/plateau schedule, no
    # focal gamma on an adamw/cosine/cross-entropy MLP; config.json keeps the full resolved config.
    assert not {"channels", "momentum", "lr_step_size", "lr_gamma", "plateau_patience", "focal_gamma"} & set(
        run.params
    )
    assert run.config["channels"] == "32,64" and run.params["label_smoothing"] == "0.0"
    assert [d["context"] for d in run.datasets] == ["train", "validation", "test"]
    assert set(run.metrics) == {*STEP_METRICS, *EPOCH_METRICS, *FINAL}
    assert [step for step, _ in run.metrics["val_loss"]] == [1, 2, 3]
    assert all(step % 2 == 0 for step, _ in run.metrics["train_loss_step"])
    assert run.history("test_accuracy")[0] > 0.85
    assert run.tags["mlops.device"] == "cpu" and run.tags["mlops.amp"] == "off"
    assert float(run.tags["mlops.sanity_check_loss"]) < 0.05
    for artifact in (
        "checkpoints/last.pt",
        "plots/learning_curves.png",
        "plots/confusion_matrix.png",
        "reports/classification_report.txt",
        "reports/misclassified_validation.csv",
    ):
        assert artifact in run.artifacts, artifact
    # One row per class of the dataset (wine: 0, 1, 2), then the summary rows.
    report = run.artifacts["reports/classification_report.txt"]
    report_rows = [line.split()[0] for line in report.splitlines() if line.strip()]
    assert report_rows[: report_rows.index("accuracy")] == ["precision", "0", "1", "2"]
    assert run.artifacts["reports/misclassified_validation.csv"].startswith(
        "row,label,prediction,confidence,"
    )
    # The logged model is our models-from-code pyfunc with a column signature of the raw columns.
    [model] = run.models
    metadata = model.kwargs["metadata"]
    assert model.flavor == "pyfunc" and Path(model.model).name == "torch_pyfunc_code.py"
    assert metadata["mlops.model_code"] == "mlops_platform.torch_pyfunc_code"
    assert metadata["feature_names"][0] == "alcohol" and metadata["column_roles"]["numeric"][0] == "alcohol"
    assert set(model.kwargs["artifacts"]) == {"network", "weights"}  # numeric: no preprocessor
    inputs = model.signature.inputs.inputs
    assert [c.name for c in inputs] == metadata["feature_names"]
    assert {c.type.name for c in inputs} == {"double"}
    assert all(c.required for c in inputs) and list(model.input_example.columns) == metadata["feature_names"]
    assert run.params["data.n_numeric"] == "13" and run.params["data.dropped"] == "none"
    assert "column_roles.json" in run.artifacts
    profile = model.files["skew_profile.json"]
    assert list(profile["features"]) == metadata["feature_names"]
    assert (
        profile["features"]["alcohol"]["kind"] == "numeric" and profile["predictions_split"] == "validation"
    )
    assert profile["output_classes"] == metadata["class_labels"]
    assert set(profile["validation_predictions"]["frequencies"]) <= set(profile["output_classes"])


def test_same_seed_twice_gives_identical_metrics():
    def values(run):
        return {
            key: points
            for key, points in run.metrics.items()
            if key not in ("epoch_seconds", "samples_per_sec")
        }

    assert values(run_recorded()) == values(run_recorded())


def test_checkpoint_holds_everything_a_resume_needs(tmp_path):
    run = run_recorded(checkpoint_every=1, scheduler="plateau", loss="focal")
    path = tmp_path / "last.pt"
    path.write_bytes(run.artifacts["checkpoints/last.pt"])
    state = torch.load(path, weights_only=True)  # the safe loader, as the issue asks
    assert {
        "model",
        "optimizer",
        "scheduler",
        "scaler",
        "epoch",
        "global_step",
        "rng",
        "config",
        "best_metric",
    } <= set(state)
    assert state["epoch"] == 3 and state["config"]["loss"] == "focal"
    assert {"python", "numpy", "torch"} <= set(state["rng"])  # the shuffle: a function of seed and epoch
    assert load_checkpoint(path)["best_epoch"] == run.history("best_epoch")[0]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"dataset": "csv:/nonexistent/data.csv", "target": "y"}, "CSV file not found"),
        ({"dataset": "digits", "model": "cnn", "cpu_threads": 1, "device": "cuda"}, "device=cuda"),
        ({"dataset": "csv:/x.csv", "target": "y", "impute": "none"}, "impute=none"),
        ({"dataset": "wine", "drop": "nope"}, "drop=nope: no such column"),
    ],
)
def test_user_errors_come_before_any_run(values, message):
    tracker = RecordingTracker()
    if torch.cuda.is_available() and values.get("device") == "cuda":
        pytest.skip("this machine has a GPU")
    with pytest.raises((UserError, DataError), match=message):
        torch_job.run(TorchTrainConfig.parse({**WINE, **values}), tracker=tracker)
    assert tracker.runs == []


def test_a_parquet_table_with_strings_booleans_and_gaps_trains_with_its_preprocessing_in_the_model(tmp_path):
    """The wine cellar as Parquet: the id column is dropped, the category and the boolean are encoded and
    the gaps imputed by the same ColumnTransformer the sklearn trainer uses, fitted on the training split
    and stored with the model; the signature keeps the raw columns and their types."""
    import cellar

    path = tmp_path / "cellar.parquet"
    cellar.wine_cellar().to_parquet(path)
    run = run_recorded(dataset=f"parquet:{path}", target=cellar.TARGET, epochs=8, hidden_sizes="32")
    assert run.params["data.dropped"] == "bottle_id" and run.params["data.n_categorical"] == "1"
    assert run.params["impute"] == "median" and run.history("test_accuracy")[0] > 0.8
    [model] = run.models
    assert set(model.kwargs["artifacts"]) == {"network", "weights", "preprocessor"}
    types = {c.name: c.type.name for c in model.signature.inputs.inputs}
    assert "bottle_id" not in types and types["region"] == "string" and types["organic"] == "boolean"
    assert types["alcohol"] == "double" and model.kwargs["metadata"]["column_roles"]["with_missing"]


def test_csv_with_a_single_sample_class_fails_before_any_run(tmp_path):
    csv = tmp_path / "tiny.csv"
    csv.write_text("a,b,label\n1,2,x\n3,4,x\n5,6,y\n")
    tracker = RecordingTracker()
    with pytest.raises(DataError, match="single sample"):
        torch_job.run(
            TorchTrainConfig.parse({**WINE, "dataset": f"csv:{csv}", "target": "label"}), tracker=tracker
        )
    assert tracker.runs == []


def test_bad_cli_params_exit_non_zero_naming_the_value_and_create_no_run(
    sqlite_tracking_uri, fresh_experiment
):
    from mlflow import MlflowClient

    from mlops_platform.cli import cli

    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    for args, named in [
        (["--model", "cnn", "--dataset", "wine"], "model=cnn needs image data"),
        (["--optimizer", "rmsprop"], "rmsprop"),
        (["--hidden-sizes", "12,abc", "--model", "mlp"], "hidden_sizes='12,abc'"),
    ]:
        result = CliRunner().invoke(cli, ["train", "torch", "--experiment", name, *args])
        assert result.exit_code != 0, result.output
        assert named in result.output
    assert MlflowClient(sqlite_tracking_uri).search_runs([experiment_id]) == []


# ------------------------------------------------------------------------ real server: kill and resume

KILL_CONFIG = [
    "--dataset", "digits", "--model", "mlp", "--hidden-sizes", "32", "--epochs", "6", "--batch-size", "8",
    "--checkpoint-every", "1", "--log-every-n-steps", "20", "--scheduler", "step", "--lr-step-size", "2",
    "--patience", "0",
]  # fmt: skip


def _train(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mlops_platform", "train", "torch", *KILL_CONFIG, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def _wait_for_checkpoint_epoch(
    home: Path, epoch: int, process: subprocess.Popen, timeout: float = 120
) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in (home / "checkpoints").glob("*/last.pt"):
            try:
                if load_checkpoint(path)["epoch"] >= epoch:
                    return path
            except Exception:  # not there yet, or replaced while reading: look again
                pass
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint of epoch {epoch} within {timeout}s")


@pytest.mark.slow
def test_sigkill_after_epoch_3_then_resume_equals_an_uninterrupted_run(
    sqlite_tracking_uri, fresh_experiment, _isolated_home, monkeypatch
):
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_tracking_uri)
    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    # Uninterrupted reference, in parallel with the run that gets killed.
    straight_home = _isolated_home.parent / "straight-home"
    reference = _train(
        "--experiment", name, "--run-name", "straight", env={**os.environ, "MLOPS_HOME": str(straight_home)}
    )
    killed = _train("--experiment", name, "--run-name", "killed")
    checkpoint = _wait_for_checkpoint_epoch(_isolated_home, 3, killed)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    run_id = checkpoint.parent.name
    epoch_at_kill = load_checkpoint(checkpoint)["epoch"]
    assert epoch_at_kill >= 3 and client.get_run(run_id).info.status == "RUNNING"

    resumed = _train("--resume-from", run_id)
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()
    assert reference.wait(timeout=300) == 0, reference.stdout.read()

    runs = {run.info.run_name: run for run in client.search_runs([experiment_id])}
    assert set(runs) == {"straight", "killed"}  # the resume continued the same run, made no new one
    straight, resumed_run = runs["straight"], runs["killed"]
    assert resumed_run.info.run_id == run_id and resumed_run.info.status == "FINISHED"
    assert resumed_run.data.tags["mlops.resumed_from_epoch"] == str(epoch_at_kill)
    for key in FINAL:
        assert resumed_run.data.metrics[key] == straight.data.metrics[key], key
    for key in (*STEP_METRICS, *EPOCH_METRICS):
        history = client.get_metric_history(run_id, key)
        steps = [metric.step for metric in history]
        assert len(steps) == len(set(steps)), f"{key} has a step stored twice: {sorted(steps)}"
        reference_history = client.get_metric_history(straight.info.run_id, key)
        assert sorted(steps) == sorted(metric.step for metric in reference_history), key
        if key not in ("epoch_seconds", "samples_per_sec"):
            values = {metric.step: metric.value for metric in history}
            assert values == {metric.step: metric.value for metric in reference_history}, key


def test_resume_downloads_the_checkpoint_from_the_run_when_no_local_copy_exists(
    sqlite_tracking_uri, fresh_experiment
):
    name, _ = fresh_experiment(sqlite_tracking_uri)
    run_id = torch_job.run(TorchTrainConfig.parse({**WINE, "epochs": 2, "experiment": name}))
    local = torch_job.checkpoint_path(run_id)
    local.unlink()
    state = torch_job.fetch_checkpoint(run_id)
    assert state["epoch"] == 2 and state["config"]["experiment"] == name
    with pytest.raises(UserError, match="resume_from='0123456789abcdef0123456789abcdef'"):
        torch_job.fetch_checkpoint("0123456789abcdef0123456789abcdef")


# ------------------------------------------------------------------------------- mlflow run smoke tests


@pytest.mark.slow
@pytest.mark.parametrize(
    "params",
    [
        {"dataset": "wine", "model": "mlp", "epochs": "2", "registered_model_name": "torch-smoke"},
        {"dataset": "digits", "model": "cnn", "epochs": "1", "channels": "8"},
    ],
    ids=["mlp", "cnn"],
)
def test_mlflow_run_smoke(params, sqlite_tracking_uri, fresh_experiment):
    import mlflow
    from mlflow import MlflowClient

    from mlops_platform.data import load_dataset

    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    command = [
        "mlflow",
        "run",
        str(REPO),
        "-e",
        "train_torch",
        "--env-manager",
        "local",
        "--experiment-name",
        name,
    ]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    # `mlflow run --env-manager local` runs the entry point's `python` from PATH: the venv's must come first.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=REPO, env=env, capture_output=True, text=True, timeout=400
    )
    assert result.returncode == 0, result.stderr[-4000:]
    [run] = MlflowClient(sqlite_tracking_uri).search_runs([experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["model"] == params["model"] and "test_accuracy" in run.data.metrics
    # Only what applies, even under `mlflow run` (MLproject leaves conditional fields undeclared):
    # an MLP run has no CNN channels, a CNN run no hidden_sizes, an adamw run no momentum.
    assert {"channels" if params["model"] == "mlp" else "hidden_sizes", "momentum"}.isdisjoint(
        run.data.params
    )
    if "channels" in params:
        assert run.data.params["channels"] == params["channels"]
    [logged] = mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list")
    assert logged.source_run_id == run.info.run_id
    if "registered_model_name" in params:
        versions = MlflowClient(sqlite_tracking_uri).search_model_versions(f"run_id = '{run.info.run_id}'")
        assert [v.name for v in versions] == [params["registered_model_name"]]
    model = mlflow.pyfunc.load_model(f"models:/{logged.model_id}")
    dataset = load_dataset(params["dataset"])
    raw = dataset.features.astype(np.float32)  # a DataFrame of raw features with the dataset's columns
    probabilities = np.asarray(model.predict(raw))
    assert probabilities.shape == (len(raw), dataset.n_classes)
    accuracy = (probabilities.argmax(axis=1) == dataset.encode_target(dataset.target)).mean()
    assert accuracy > 0.8


def test_launcher_run_of_a_resume_points_at_the_continued_run(
    sqlite_tracking_uri, fresh_experiment, monkeypatch
):
    """`mlflow run -P resume_from=ID` made a run before the job started; it is tagged with ID."""
    from mlflow import MlflowClient

    from mlops_platform.tracking import Tracker

    _, experiment_id = fresh_experiment(sqlite_tracking_uri)
    client = MlflowClient(sqlite_tracking_uri)
    launcher = client.create_run(experiment_id).info.run_id
    continued = client.create_run(experiment_id).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher)
    with Tracker(sqlite_tracking_uri).run(resume_run_id=continued) as run:
        torch_job.point_launcher_run_at(run)
    assert client.get_run(launcher).data.tags["mlops.resumed_run_id"] == continued
    assert "mlops.resumed_run_id" not in client.get_run(continued).data.tags
