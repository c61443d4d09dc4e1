"""model_safety: our trusted-types list covers what our trainers produce, and the models-from-code
marker accepts exactly a module of this package."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from mlops_platform import model_safety
from mlops_platform.model_safety import MODEL_CODE_KEY, UnsafeModelError, check_model


@pytest.mark.slow  # fits every estimator of the table (stacking cross-validates inside)
def test_every_sklearn_model_we_train_needs_only_our_trusted_types():
    import skops.io
    from sklearn.datasets import load_diabetes, load_digits

    from mlops_platform.training.sklearn_models import build_pipeline, models_for

    warnings.filterwarnings("ignore")
    for task, loader in (("classification", load_digits), ("regression", load_diabetes)):
        x, y = loader(return_X_y=True, as_frame=True)
        x, y = x.iloc[:150], y.iloc[:150]
        for model in models_for(task):
            pipeline = build_pipeline(model, task, {}, 0).fit(x, y)
            needed = set(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))
            assert needed <= model_safety.TRUSTED_SKOPS_TYPES, (task, model, needed)


def test_a_table_model_with_its_preprocessing_needs_only_our_trusted_types():
    import skops.io
    from cellar import TARGET, wine_cellar

    from mlops_platform.columns import infer_roles
    from mlops_platform.preprocessing import build_preprocessor, with_preprocessing
    from mlops_platform.training.sklearn_models import build_pipeline

    frame = wine_cellar()
    labels = frame.pop(TARGET)
    roles = infer_roles(frame, (), ("bottle_id",))
    for encoding in ("onehot", "ordinal"):
        preprocessor = build_preprocessor(roles, scale=False, encoding=encoding, missing_indicator=True)
        pipeline = with_preprocessing(build_pipeline("hist_gb", "classification", {}, 0), preprocessor)
        pipeline.fit(frame, labels)
        needed = set(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))
        assert needed <= model_safety.TRUSTED_SKOPS_TYPES, (encoding, needed)


def _code_model(tmp_path: Path, source: Path, marker: str | None) -> Path:
    """A models-from-code MLmodel folder (as MLflow 3 writes one) whose code file is a copy of `source`."""
    import yaml

    folder = tmp_path / "model"
    folder.mkdir(parents=True)
    shutil.copy(source, folder / "wrapper.py")
    (folder / "weights.safetensors").write_bytes(b"")
    mlmodel = {
        "flavors": {
            "python_function": {
                "loader_module": "mlflow.pyfunc.loaders.code_model",
                "model_code_path": "/somewhere/else/wrapper.py",
                "code": None,
                "artifacts": {"weights": {"path": "weights.safetensors", "uri": "/x/weights.safetensors"}},
            }
        },
        "metadata": {MODEL_CODE_KEY: marker} if marker else {},
    }
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return folder


def test_models_from_code_are_accepted_only_when_the_code_is_ours(tmp_path):
    ours = Path(model_safety.__file__)
    plan = check_model(_code_model(tmp_path / "a", ours, "mlops_platform.model_safety"))
    assert plan.format == "code" and plan.allow_pickle is False
    # Someone else's code under our module's name, our code without the marker, a module outside
    # the package: refused.
    (tmp_path / "other.py").write_text("import os\nos.system('true')\n")
    for source, marker in (
        (tmp_path / "other.py", "mlops_platform.model_safety"),
        (ours, None),
        (ours, "os"),
    ):
        folder = tmp_path / f"case-{marker}-{source.name}"
        with pytest.raises(UnsafeModelError, match="not a module of this package"):
            check_model(_code_model(folder, source, marker))
    # A pickle among the artifacts is refused even when the code is ours.
    folder = _code_model(tmp_path / "p", ours, "mlops_platform.model_safety")
    (folder / "weights.safetensors").rename(folder / "weights.pkl")
    import yaml

    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"]["artifacts"]["weights"]["path"] = "weights.pkl"
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(UnsafeModelError, match=r"weights\.pkl, not a data-only format"):
        check_model(folder)
    assert check_model(folder, allow_unsafe=True).format == "unsafe"


def test_a_state_dict_artifact_is_accepted_only_when_it_holds_tensors_only(tmp_path):
    """`.pt` artifacts of a models-from-code model: a state_dict of tensors loads with torch's weights-only
    unpickler and is accepted; a pickle of anything else (here: a function to call) is refused."""
    import pickle

    import torch
    import yaml

    ours = Path(model_safety.__file__)
    folder = _code_model(tmp_path, ours, "mlops_platform.model_safety")
    torch.save({"layer.weight": torch.zeros(2, 2)}, folder / "weights.pt")
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"]["artifacts"]["weights"]["path"] = "weights.pt"
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    assert check_model(folder).format == "code"
    (folder / "weights.pt").write_bytes(pickle.dumps(shutil.rmtree))
    with pytest.raises(UnsafeModelError, match=r"weights\.pt is not a tensors-only state_dict"):
        check_model(folder)


def test_under_a_plan_without_pickles_mlflow_itself_refuses_a_pickled_model_and_says_nothing_else(tmp_path):
    """Our loads set MLflow's pickle flag (deprecated in MLflow 3.18, still the only switch that refuses
    pickles alone): MLflow must still refuse a pickle under it, and its deprecation warning stays out
    of the server's log. When a release drops the flag, this fails and says so."""
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException
    from sklearn.linear_model import LinearRegression

    path = tmp_path / "pickled"
    mlflow.sklearn.save_model(
        LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), path, serialization_format="pickle"
    )
    with warnings.catch_warnings(record=True) as caught:  # the filters in force, ours included
        no_pickles = model_safety.LoadPlan("skops", allow_pickle=False)
        with model_safety.loading(no_pickles), pytest.raises(MlflowException, match=r"(?i)pickle"):
            mlflow.sklearn.load_model(str(path))
        with model_safety.loading(model_safety.LoadPlan("unsafe", allow_pickle=True)):
            assert mlflow.sklearn.load_model(str(path)).predict([[2.0]])[0] == pytest.approx(2.0)
    assert not [w for w in caught if "MLFLOW_ALLOW_PICKLE_DESERIALIZATION" in str(w.message)]
