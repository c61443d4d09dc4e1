"""`mlops runs search|reap`, `mlops promote`, `mlops registry ...` and `mlflow run . -e promote`."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from registry.helpers import make_run  # tests/registry/helpers.py

from mlops_platform.cli import cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def filled(sqlite_tracking_uri, fresh_experiment) -> tuple[str, dict[float, str]]:
    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    runs = {
        value: make_run(sqlite_tracking_uri, experiment_id, {"val_acc": value}, params={"lr": str(value)})
        for value in (0.6, 0.9, 0.7)
    }
    make_run(sqlite_tracking_uri, experiment_id, {"val_acc": 0.99}, status="FAILED", with_model=False)
    return name, runs


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_runs_search_formats(filled) -> None:
    name, runs = filled
    result = invoke(
        "runs", "search", "--experiment", name, "--order-by", "metrics.val_acc DESC", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["run_id"] for r in records] == [runs[0.9], runs[0.7], runs[0.6]]  # FAILED run left out

    result = invoke("runs", "search", "-e", name, "--filter", "params.lr = '0.7'", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["run_id"] for row in rows] == [runs[0.7]] and rows[0]["metrics.val_acc"] == "0.7"

    result = invoke(
        "runs", "search", "-e", name, "--status", "ANY", "--limit", "2", "--order-by", "metrics.val_acc DESC"
    )
    assert result.exit_code == 0 and "2 run(s)" in result.output and "FAILED" in result.output


def test_promote_registry_and_rollback_commands(filled) -> None:
    name, runs = filled
    model = f"cli-{name}"
    result = invoke(
        "promote", "--experiment", name, "--metric", "val_acc", "--mode", "max", "--model-name", model
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.split("\n", 1)[1])["run_id"] == runs[0.9]

    result = invoke("registry", "show", model, "--format", "json")
    shown = json.loads(result.stdout)
    assert shown["aliases"] == {"champion": "1"} and shown["versions"][0]["run_id"] == runs[0.9]
    assert model in invoke("registry", "list").output

    result = invoke("registry", "rollback", model)
    assert result.exit_code == 1 and "no @previous" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "search", "-e", "no-such-exp"], "unknown experiment 'no-such-exp'"),
        (["runs", "reap", "--experiment", "no-such-exp"], "unknown experiment 'no-such-exp'"),
        (["runs", "search", "-e", "{name}", "--filter", "metrics.val_acc ~ 3"], "metrics.val_acc ~ 3"),
        (
            [
                "promote",
                "--experiment",
                "{name}",
                "--metric",
                "val_nope",
                "--mode",
                "max",
                "--model-name",
                "m",
            ],
            "val_nope",
        ),
        (
            ["promote", "--experiment", "{name}", "--model-name", "m", "--mode", "max", "--min-delta", "-1"],
            "min_delta",
        ),
        # The filter grammar cannot quote a trailing backslash: refused before anything is registered.
        (["promote", "--experiment", "{name}", "--model-name", "m\\", "--mode", "max"], "backslash"),
        (["train", "sklearn", "--registered-model-name", "it's"], "single quote"),
        (["registry", "show", "no-such-model"], "unknown registered model 'no-such-model'"),
        (["registry", "rollback", "no-such-model"], "unknown registered model 'no-such-model'"),
    ],
)
def test_errors_exit_non_zero_naming_the_value(filled, args, message) -> None:
    name, _ = filled
    result = invoke(*[arg.format(name=name) for arg in args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_promote_can_require_our_trainers_and_names_who_made_the_run(sqlite_tracking_uri, fresh_experiment):
    from mlflow import MlflowClient

    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    ours = make_run(
        sqlite_tracking_uri,
        experiment_id,
        {"val_acc": 0.7},
        tags={"mlops.entry_point": "train_sklearn", "mlflow.user": "alice"},
    )
    # Better, but logged by hand (any model, any claimed score): not a run our trainer made.
    make_run(sqlite_tracking_uri, experiment_id, {"val_acc": 0.99}, tags={"mlflow.user": "mallory"})
    model = f"trainers-{name}"
    common = ["promote", "--experiment", name, "--metric", "val_acc", "--mode", "max", "--model-name", model]
    refused = invoke(*common, "--require-entry-point", "sweep")
    assert refused.exit_code != 0 and "'sweep'" in refused.output
    result = invoke(*common, "--require-entry-point", "train_sklearn")
    assert result.exit_code == 0, result.output
    assert f"-> version 1 (run {ours} by user alice)" in result.output
    assert json.loads(result.output[result.output.index("{") :])["run_user"] == "alice"
    version = MlflowClient(sqlite_tracking_uri).get_model_version(model, "1")
    assert version.run_id == ours and version.tags["mlops.run_user"] == "alice"


@pytest.mark.slow
def test_mlflow_run_promote_entry_point(filled, sqlite_tracking_uri) -> None:
    name, runs = filled
    model = f"mlflow-run-{name}"
    # The job's own run goes to the test's experiment (it has no val_acc, so it never competes).
    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "promote", "--env-manager", "local"]
    command += ["--experiment-name", name]
    # MLproject commands call `python`: it must be this interpreter (the venv), whatever PATH says.
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ok = subprocess.run(
        [
            *command,
            "-P",
            f"experiment={name}",
            "-P",
            "metric=val_acc",
            "-P",
            "mode=max",
            "-P",
            f"model_name={model}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert f"promoted {model}@champion -> version 1 (run {runs[0.9]} by user " in ok.stdout

    from mlflow import MlflowClient

    client = MlflowClient(sqlite_tracking_uri)
    assert client.get_model_version_by_alias(model, "champion").run_id == runs[0.9]
    job_runs = client.search_runs(
        [client.get_experiment_by_name(name).experiment_id], "tags.`mlops.role` = 'promotion'"
    )
    assert len(job_runs) == 1 and job_runs[0].data.tags["mlops.promote.promoted"] == "true"
    bad = subprocess.run(
        [*command, "-P", "experiment=does-not-exist", "-P", "mode=max", "-P", f"model_name={model}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert bad.returncode != 0
    assert "unknown experiment 'does-not-exist'" in bad.stdout + bad.stderr
