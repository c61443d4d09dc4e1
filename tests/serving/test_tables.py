"""Real tables end to end, for both trainers: the wine cellar (string categories with gaps, missing
numbers, a boolean, an id column no model should use, string labels) trains through `mlflow run`, is
promoted, and answers the same, to the last float, through `mlops serve`, `mlflow models serve` and
`mlflow.pyfunc.load_model(...).predict`: rows with missing values and an unseen category included,
named columns in any order; a request without a column is a 422 naming it. `mlops serve` answers them on
its table path (serving/tables.py): concurrent requests are batched through the model's preprocessing,
each answered as `mlflow models serve` answers it alone."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from cellar import TARGET, wine_cellar
from serving_helpers import ServerProcess
from test_mlflow_serve import _mlflow_serve, _stop

REPO = Path(__file__).resolve().parents[2]
# Tiny settings: the point is the table's way through the platform, not the model's quality.
TRAINERS = {
    "train_sklearn": {"model": "logreg", "cv_folds": "2", "baseline": "false"},
    "train_torch": {"model": "mlp", "hidden_sizes": "16", "epochs": "4", "batch_size": "16"},
}
RUN_TIMEOUT_S = 400


def _request_rows() -> pd.DataFrame:
    """Three cellar rows (id column included, as a client would send the whole record), then the gaps:
    a missing number, a missing category, an unseen category."""
    rows = wine_cellar().drop(columns=[TARGET]).iloc[[3, 70, 150]].reset_index(drop=True)
    rows["organic"] = rows["organic"].astype(bool)
    extra = rows.iloc[[0, 1, 2]].copy().reset_index(drop=True)
    extra.loc[0, "alcohol"] = np.nan
    extra.loc[1, "region"] = None
    extra.loc[2, "region"] = "toscana"  # never seen in training
    extra.loc[2, "magnesium"] = np.nan
    return pd.concat([rows, extra], ignore_index=True)


def _split_body(frame: pd.DataFrame) -> str:
    records = frame.astype(object).where(frame.notna(), None)
    return json.dumps({"dataframe_split": {"columns": list(frame.columns), "data": records.values.tolist()}})


def _records_body(frame: pd.DataFrame) -> str:
    records = frame.astype(object).where(frame.notna(), None)
    return json.dumps({"dataframe_records": records.to_dict(orient="records")})


def _batched_alone(uri: str, tracking_uri: str, rows: pd.DataFrame) -> tuple[list, int]:
    """Each row sent as its own request, all at once, to the table path in-process: the answers, and
    the most rows one model call took (the requests were queued together, so one batch took them)."""
    from mlops_platform.serving.predictors import load_served_model
    from mlops_platform.serving.scoring import score

    model = load_served_model(uri, tracking_uri)
    try:
        assert model.table is not None and model.batcher is not None, model.flavor

        async def send() -> list:
            bodies = [_split_body(rows.iloc[[i]]).encode() for i in range(len(rows))]
            return await asyncio.gather(*(score(model, body, "application/json") for body in bodies))

        answers = asyncio.run(send())
        return [json.loads(answer.body)["predictions"][0] for answer in answers], model.batcher.largest
    finally:
        model.close()


def _env(tracking_uri: str, home: Path) -> dict[str, str]:
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": tracking_uri, "MLOPS_HOME": str(home)}


@pytest.mark.slow
def test_a_real_table_trains_serves_and_answers_alike_everywhere_for_both_trainers(
    sqlite_server, sqlite_tracking_uri, tmp_path
):
    import mlflow
    from mlflow import MlflowClient

    table = tmp_path / "cellar.csv"
    wine_cellar().to_csv(table, index=False)
    env = _env(sqlite_server.url, tmp_path / "home")
    client = MlflowClient(sqlite_server.url)
    # Both trainings at once: the test pays for the slower one only.
    started = {}
    for entry, params in TRAINERS.items():
        experiment = f"tables-{entry}-{uuid.uuid4().hex[:8]}"
        client.create_experiment(experiment)
        command = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", entry, "--env-manager", "local"]
        command += ["--experiment-name", experiment]
        for key, value in {"dataset": f"csv:{table}", "target": TARGET, **params}.items():
            command += ["-P", f"{key}={value}"]
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        started[entry] = (process, experiment)
    models = {}
    for entry, (process, experiment) in started.items():
        output = process.communicate(timeout=RUN_TIMEOUT_S)[0]
        assert process.returncode == 0, output[-5000:]
        model_name = f"cellar-{entry}-{uuid.uuid4().hex[:6]}"
        promoted = subprocess.run(
            [
                sys.executable,
                "-m",
                "mlops_platform",
                "promote",
                "--experiment",
                experiment,
                "--model-name",
                model_name,
                "--metric",
                "test_accuracy",
                "--mode",
                "max",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        [run] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
        # The id column was dropped (looks like an identifier) and the roles are logged with the run.
        assert run.data.params["data.dropped"] == "bottle_id", run.data.params
        assert run.data.params["data.n_categorical"] == "1" and run.data.params["data.n_boolean"] == "1"
        models[entry] = f"models:/{model_name}@champion"

    rows = _request_rows()
    body = _split_body(rows)
    reordered = _split_body(rows[list(reversed(rows.columns))])
    without_region = _split_body(rows.drop(columns=["region"]))
    records = _records_body(rows)
    for entry, uri in models.items():
        pyfunc = mlflow.pyfunc.load_model(uri)
        expected = np.asarray(pyfunc.predict(rows)).tolist()  # float32 -> the float64 MLflow writes
        # Each row alone, as `mlflow models serve` answers a one-row request (a network's float sums
        # depend on how many rows it multiplies at once).
        alone = [np.asarray(pyfunc.predict(rows.iloc[[i]])).tolist()[0] for i in range(len(rows))]
        predictions_log = tmp_path / f"{entry}-predictions.jsonl"
        ours = ServerProcess(
            uri, sqlite_server.url, tmp_path / f"{entry}-ours.log", "--log-predictions", str(predictions_log)
        ).wait_ready()
        theirs, url = _mlflow_serve(uri, sqlite_server.url, tmp_path / f"{entry}-mlflow.log")
        try:
            # Served natively (the table path), not through MLflow's pyfunc code.
            assert ours.get("/health").json()["flavor"] != "pyfunc", entry
            for request in (body, reordered, records):
                answer = ours.post(request)
                assert answer.status_code == 200, (entry, answer.text)
                assert answer.json()["predictions"] == expected, entry
                answer = requests.post(
                    f"{url}/invocations",
                    data=request,
                    headers={"Content-Type": "application/json"},
                    timeout=60,
                )
                assert answer.status_code == 200, (entry, answer.text)
                assert answer.json()["predictions"] == expected, entry
            for i in range(len(rows)):
                answer = requests.post(
                    f"{url}/invocations",
                    data=_split_body(rows.iloc[[i]]),
                    headers={"Content-Type": "application/json"},
                    timeout=60,
                )
                assert answer.json()["predictions"] == [alone[i]], (entry, i)
            refused = ours.post(without_region)
            assert refused.status_code == 422 and "region" in refused.json()["message"], refused.text
            assert ours.get("/health").json()["batched_rows"] == 3 * len(rows), entry
            # What the table path does not read is answered by MLflow's own code, as MLflow answers it:
            # CSV, and a value of another type than its column's (a number in a string column).
            number_in_strings = body.replace('"toscana"', "12")
            for request, content_type in ((rows.to_csv(index=False), "text/csv"), (number_in_strings, None)):
                content_type = content_type or "application/json"
                answer = ours.post(request, content_type)
                mlflows = requests.post(
                    f"{url}/invocations", data=request, headers={"Content-Type": content_type}, timeout=60
                )
                assert (answer.status_code, answer.json()) == (mlflows.status_code, mlflows.json()), entry
            assert ours.get("/health").json()["batched_rows"] == 3 * len(rows), entry
            refused = ours.post(rows.drop(columns=["region"]).to_csv(index=False), "text/csv")
            assert refused.status_code == 422 and "region" in refused.json()["message"], refused.text
        finally:
            _stop(theirs)
            ours.stop()
        # Concurrent one-row requests share one model call, each answered as if alone.
        answers, largest = _batched_alone(uri, sqlite_server.url, rows)
        assert answers == alone, entry
        assert largest == len(rows), largest
        # Answered on MLflow's pyfunc path (strings and gaps), yet logged like any other answer: the
        # rows as the model saw them, by name, gaps as null, and the predictions the client got.
        lines = [json.loads(line) for line in predictions_log.read_text().splitlines()]
        # The five answered requests; the refused ones are not predictions.
        assert len(lines) == 5, lines
        sent = rows.astype(object).where(rows.notna(), None)
        for line in lines[:4]:  # the fifth holds a number where a string was sent
            assert line["predictions"] == expected
            assert {"region", "alcohol", "organic"} <= set(line["columns"]), line["columns"]
            logged = pd.DataFrame(line["inputs"], columns=line["columns"]).astype(object)
            logged = logged.where(logged.notna(), None)
            for column in line["columns"]:
                assert logged[column].tolist() == sent[column].tolist(), column
        # ... so the skew report reads them against the model's training profile, strings included.
        skew_command = ["skew", "--model-uri", uri, "--log", str(predictions_log), "--no-mlflow"]
        skew = subprocess.run(
            [sys.executable, "-m", "mlops_platform", *skew_command, "--tracking-uri", sqlite_server.url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert skew.returncode == 0, skew.stdout + skew.stderr
        compared = {feature["feature"] for feature in json.loads(skew.stdout)["features"]}
        assert {"region", "alcohol", "organic"} <= compared, skew.stdout
        if entry == "train_torch":
            probabilities = np.asarray(expected)
            assert probabilities.shape == (6, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
        else:
            assert set(expected) <= {"barolo", "grignolino", "barbera"}


@pytest.mark.slow
def test_torch_model_of_numeric_columns_is_served_fast_by_name_and_refuses_a_missing_column(
    sqlite_tracking_uri, tmp_path
):
    """The torch trainer's model of a numeric table (wine) is our models-from-code pyfunc with a column
    signature: `mlops serve` loads it without --allow-unsafe-models on its native path, columns sent in
    another order get the same answer (a tensor signature would have taken them by position), and a
    request without a column is a 422 naming it."""
    import mlflow
    import torch

    from mlops_platform.config.train_torch import TorchTrainConfig
    from mlops_platform.data import load_dataset
    from mlops_platform.tracking import Tracker
    from mlops_platform.training import torch_job

    name = f"wine-torch-{uuid.uuid4().hex[:6]}"
    config = TorchTrainConfig.parse(
        {"dataset": "wine", "model": "mlp", "hidden_sizes": "8", "epochs": 2, "registered_model_name": name}
    )
    threads = torch.get_num_threads()
    try:
        torch_job.run(
            config,
            tracker=Tracker(
                sqlite_tracking_uri,
                home=tmp_path / "journal",
                system_metrics_interval=0,
                replay_on_start=False,
            ),
        )
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)
    uri = f"models:/{name}/1"
    rows = load_dataset("wine").features.iloc[[0, 60, 130]]
    expected = np.asarray(mlflow.pyfunc.load_model(uri).predict(rows)).tolist()
    server = ServerProcess(uri, sqlite_tracking_uri, tmp_path / "serve.log").wait_ready()
    try:
        assert server.get("/health").json()["flavor"] == "pytorch"  # the native path, not the pyfunc one
        for frame in (rows, rows[list(reversed(rows.columns))]):
            answer = server.post(_split_body(frame))
            assert answer.status_code == 200, answer.text
            assert answer.json()["predictions"] == expected
        refused = server.post(_split_body(rows.drop(columns=["proline"])))
        assert refused.status_code == 422 and "proline" in refused.json()["message"], refused.text
    finally:
        server.stop()
