"""A registered model whose loading could run code is refused by `mlops serve` / `mlops predict` (and
by the loader under them), unless the operator passes --allow-unsafe-models."""

from __future__ import annotations

import json
import os
import pathlib
import uuid

import numpy as np
import pytest
from click.testing import CliRunner
from serving_helpers import _log, digits_frame, log_sklearn, log_torch

from mlops_platform.cli import cli
from mlops_platform.model_safety import UnsafeModelError
from mlops_platform.serving.parsing import parse_request
from mlops_platform.serving.predictors import load_served_model


class _Touch:
    """Unpickling this calls Path.touch(marker): the stand-in for an attacker's payload."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _evil_python_model(marker: str):
    import mlflow.pyfunc

    class Evil(mlflow.pyfunc.PythonModel):
        def __init__(self):
            self.payload = _Touch(marker)

        def predict(self, context, model_input):
            return model_input

    return Evil()


def test_a_python_model_that_runs_code_on_load_is_refused_and_runs_nothing(sqlite_tracking_uri, tmp_path):
    marker = tmp_path / "pwned"
    name = f"serve-evil-{uuid.uuid4().hex[:6]}"
    version = _log(sqlite_tracking_uri, name, "pyfunc", None, python_model=_evil_python_model(str(marker)))
    uri = f"models:/{name}/{version}"
    result = CliRunner().invoke(cli, ["serve", "--model-uri", uri, "--tracking-uri", sqlite_tracking_uri])
    assert result.exit_code == 1, result.output
    assert "python_model stored with cloudpickle" in result.output
    assert "--allow-unsafe-models" in result.output and "Traceback" not in result.output
    request = tmp_path / "in.json"
    request.write_text(json.dumps({"inputs": [[1.0]]}))
    result = CliRunner().invoke(
        cli, ["predict", "--model-uri", uri, "--tracking-uri", sqlite_tracking_uri, "--input", str(request)]
    )
    assert result.exit_code == 1 and "python_model stored with cloudpickle" in result.output
    assert not marker.exists(), "the model's code ran"
    # The operator's explicit opt-in loads it (and so runs its code: that is what the flag means).
    load_served_model(uri, sqlite_tracking_uri, allow_unsafe=True).close()
    assert marker.exists()


def test_pickled_sklearn_and_torch_models_are_refused_unless_allowed(sqlite_tracking_uri):
    name = f"serve-pickled-{uuid.uuid4().hex[:6]}"
    cloudpickled = log_sklearn(sqlite_tracking_uri, name, serialization_format="cloudpickle")
    pickled_torch = log_torch(sqlite_tracking_uri, f"{name}-t", serialization_format="pickle")
    with pytest.raises(UnsafeModelError, match="scikit-learn model stored with cloudpickle"):
        load_served_model(f"models:/{name}/{cloudpickled}", sqlite_tracking_uri)
    with pytest.raises(UnsafeModelError, match="PyTorch model stored with pickle"):
        load_served_model(f"models:/{name}-t/{pickled_torch}", sqlite_tracking_uri)
    model = load_served_model(f"models:/{name}/{cloudpickled}", sqlite_tracking_uri, allow_unsafe=True)
    try:
        x, y = digits_frame()
        body = json.dumps({"dataframe_split": x.iloc[:10].to_dict(orient="split")}).encode()
        answer = model.predict_array(model.validator.to_array(parse_request(body, "application/json")))
        assert (np.asarray(answer) == y.iloc[:10].to_numpy()).mean() >= 0.8
    finally:
        model.close()


def test_a_skops_model_that_trusts_itself_with_other_types_is_refused(sqlite_tracking_uri):
    """skops checks types against the list in the model's own MLmodel: we check against ours."""
    import skops.io
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    x, y = digits_frame()
    # A transformer holding os.system: loading it imports the function an attacker would call later.
    pipeline = make_pipeline(
        FunctionTransformer(inverse_func=os.system, check_inverse=False), LogisticRegression(max_iter=200)
    ).fit(x, y)
    self_trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    assert any("system" in name for name in self_trusted)
    name = f"serve-selftrust-{uuid.uuid4().hex[:6]}"
    version = _log(sqlite_tracking_uri, name, "sklearn", pipeline, skops_trusted_types=self_trusted)
    with pytest.raises(UnsafeModelError, match=r"types no trainer of ours produces: .*system"):
        load_served_model(f"models:/{name}/{version}", sqlite_tracking_uri)


def test_our_skops_and_pt2_models_still_load_natively(sklearn_model, torch_model):
    for registered, flavor in ((sklearn_model, "sklearn"), (torch_model, "pytorch")):
        model = load_served_model(registered.champion_uri, registered.tracking_uri)
        try:
            assert model.flavor == flavor and model.fast
        finally:
            model.close()
