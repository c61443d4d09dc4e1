"""Loading models in-process: alias resolution on both backends, predict_fn, and the pyfunc fallback."""

from __future__ import annotations

import json
import uuid

import numpy as np
from serving_helpers import digits_frame, log_sklearn, set_champion

from mlops_platform.serving.parsing import parse_request
from mlops_platform.serving.predictors import load_served_model


def test_alias_resolves_on_each_backend_and_predict_proba_is_served_natively(tracking_uri, mlflow_client):
    import mlflow

    name = f"serve-proba-{uuid.uuid4().hex[:6]}"
    version = log_sklearn(tracking_uri, name, pyfunc_predict_fn="predict_proba")
    set_champion(tracking_uri, name, version)
    model = load_served_model(f"models:/{name}@champion", tracking_uri)
    try:
        identity = model.identity
        assert (identity.name, identity.version, identity.alias) == (name, version, "champion")
        assert identity.run_id == mlflow_client.get_model_version(name, version).run_id
        assert model.flavor == "sklearn" and model.predict_fn == "predict_proba"
        x, _ = digits_frame()
        body = json.dumps({"dataframe_records": x.iloc[:4].to_dict(orient="records")}).encode()
        array = model.validator.to_array(parse_request(body, "application/json"))
        ours = json.loads(model.output_json(model.predict_array(array)))
        source = mlflow_client.get_model_version_download_uri(name, version)
        pyfunc = mlflow.pyfunc.load_model(
            mlflow.artifacts.download_artifacts(source, tracking_uri=tracking_uri)
        )
        assert ours == pyfunc.predict(x.iloc[:4]).tolist()
        assert np.asarray(ours).shape == (4, 10)
    finally:
        model.close()


def test_a_model_without_signature_is_served_by_mlflows_own_code(sqlite_tracking_uri):
    name = f"serve-unsigned-{uuid.uuid4().hex[:6]}"
    version = log_sklearn(sqlite_tracking_uri, name, signed=False)
    model = load_served_model(f"models:/{name}/{version}", sqlite_tracking_uri)
    try:
        assert model.flavor == "pyfunc" and not model.fast
        x, _ = digits_frame()
        body = json.dumps({"dataframe_split": x.iloc[:3].to_dict(orient="split")}).encode()
        status, content = model.fallback_response(body, "application/json")
        assert status == 200
        assert json.loads(content) == {"predictions": model.pyfunc_model.predict(x.iloc[:3]).tolist()}
        status, content = model.fallback_response(b'{"dataframe_split": [', "application/json")
        assert status == 400 and len(json.loads(content)["message"]) < 600
    finally:
        model.close()
