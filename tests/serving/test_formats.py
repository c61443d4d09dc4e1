"""Every input format, over real HTTP to a real `mlops serve`, answered exactly as MLflow answers.

The reference is MLflow's own request handler (`mlflow.pyfunc.scoring_server.invocations`, what
`mlflow models serve` runs per request) on `mlflow.pyfunc.load_model(...)`, plus `pyfunc.predict`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from serving_helpers import digits_frame


def _requests_for(rows, tensor: bool) -> dict[str, tuple[str, str]]:
    """name -> (body, content type) for the same rows in every format the model's signature allows."""
    split = {"dataframe_split": rows.to_dict(orient="split")}
    bodies = {
        "dataframe_split": split,
        "dataframe_split_no_index": {
            "dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}
        },
        "dataframe_records": {"dataframe_records": rows.to_dict(orient="records")},
    }
    if tensor:
        bodies["inputs"] = {"inputs": rows.values.tolist()}
        bodies["instances"] = {"instances": rows.values.tolist()}
    else:
        reordered = rows[list(rows.columns)[::-1]]
        bodies["dataframe_split_reordered"] = {"dataframe_split": reordered.to_dict(orient="split")}
        bodies["inputs_columns"] = {"inputs": {c: rows[c].tolist() for c in rows.columns}}
        bodies["instances_records"] = {"instances": rows.to_dict(orient="records")}
        bodies["ints_for_doubles"] = {"dataframe_split": rows.astype(int).to_dict(orient="split")}
        # Inference params: answered by MLflow's own code path (our pyfunc fallback).
        bodies["with_params"] = {**split, "params": {"unused": 1}}
    requests_ = {name: (json.dumps(body), "application/json") for name, body in bodies.items()}
    requests_["json_charset"] = (json.dumps(split), "application/json; charset=utf-8")
    if not tensor:
        requests_["csv"] = (rows.to_csv(index=False), "text/csv")
    return requests_


def load_pyfunc(model_uri: str, tracking_uri: str):
    import mlflow
    from mlflow import MlflowClient

    name, _, alias = model_uri[len("models:/") :].partition("@")
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    version = client.get_model_version_by_alias(name, alias).version
    source = client.get_model_version_download_uri(name, version)
    return mlflow.pyfunc.load_model(mlflow.artifacts.download_artifacts(source, tracking_uri=tracking_uri))


def mlflow_answer(model, body: str, content_type: str):
    """What `mlflow models serve` answers: its own per-request handler on the same model."""
    from mlflow.pyfunc import scoring_server

    result = scoring_server.invocations(body, content_type, model, model.metadata.get_input_schema())
    assert result.status == 200, result.response
    return json.loads(result.response)


@pytest.mark.parametrize("rows_count", [1, 7])
def test_sklearn_every_format_equals_mlflow(sklearn_server, sklearn_model, rows_count):
    model = load_pyfunc(sklearn_model.champion_uri, sklearn_model.tracking_uri)
    x, _ = digits_frame()
    rows = x.iloc[10 : 10 + rows_count] + (0.25 if rows_count > 1 else 0)
    for name, (body, content_type) in _requests_for(rows, tensor=False).items():
        response = sklearn_server.post(body, content_type)
        assert response.status_code == 200, (name, response.text)
        assert response.json() == mlflow_answer(model, body, content_type), name
        assert response.json()["predictions"] == model.predict(rows).tolist(), name


def test_torch_every_format_matches_mlflow(torch_server, torch_model):
    model = load_pyfunc(torch_model.champion_uri, torch_model.tracking_uri)
    x, _ = digits_frame()
    rows = x.iloc[20:25]
    direct = model.predict(rows.to_numpy(np.float32))
    for name, (body, content_type) in _requests_for(rows, tensor=True).items():
        response = torch_server.post(body, content_type)
        assert response.status_code == 200, (name, response.text)
        expected = mlflow_answer(model, body, content_type)
        ours = response.json()
        assert ours.keys() == expected.keys() == {"predictions"}
        # Same values up to float32 rounding: the batch a row is computed in changes the BLAS kernel.
        np.testing.assert_allclose(ours["predictions"], expected["predictions"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(ours["predictions"], direct, rtol=1e-5, atol=1e-7)
    # CSV for a tensor signature: MLflow refuses it (float64 vs float32); we cast like JSON input.
    response = torch_server.post(rows.to_csv(index=False), "text/csv")
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["predictions"], direct, rtol=1e-5, atol=1e-7)


def test_concurrent_requests_each_get_their_own_rows(
    sklearn_server, torch_server, sklearn_model, torch_model
):
    """Micro-batching merges concurrent requests into one model call; every answer must stay its own."""
    from concurrent.futures import ThreadPoolExecutor

    x, _ = digits_frame()
    servers = {"sklearn": (sklearn_server, sklearn_model), "torch": (torch_server, torch_model)}
    for kind, (server, registered) in servers.items():
        model = load_pyfunc(registered.champion_uri, registered.tracking_uri)
        slices = [x.iloc[i * 3 : i * 3 + 1 + i % 4] for i in range(48)]
        before = server.get("/health").json()

        def ask(rows, server=server):
            session = __import__("requests").Session()
            body = json.dumps({"dataframe_split": rows.to_dict(orient="split")})
            return session.post(
                f"{server.url}/invocations",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=30,
            ).json()

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, slices))
        for rows, answer in zip(slices, answers, strict=True):
            expected = model.predict(rows if kind == "sklearn" else rows.to_numpy(np.float32))
            if kind == "sklearn":
                assert answer["predictions"] == expected.tolist()
            else:
                np.testing.assert_allclose(answer["predictions"], expected, rtol=1e-5, atol=1e-7)
        after = server.get("/health").json()
        calls = after["batched_calls"] - before["batched_calls"]
        assert after["batched_rows"] - before["batched_rows"] == sum(len(rows) for rows in slices)
        assert calls <= len(slices), kind
