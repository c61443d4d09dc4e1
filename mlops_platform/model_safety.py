"""Which logged models may be loaded: only formats whose loading cannot run code from the model.

Anyone who can log a run can log a model, and `mlops promote` may make it champion; loading a pickle
(or cloudpickle, or a pickled `python_model`) runs whatever code its author put in it. So `mlops serve`
and `mlops predict` load only:

- the sklearn flavor stored with skops, when every type skops would have to trust is one our own
  trainers produce (`TRUSTED_SKOPS_TYPES`, our list: the model's own `skops_trusted_types` is written
  by the model's author and proves nothing);
- the pytorch flavor stored as a torch.export archive (`pt2`), which MLflow verifies to be pickle-free
  when `MLFLOW_ALLOW_PICKLE_DESERIALIZATION` is false (we load it that way);
- a models-from-code pyfunc whose code file is byte for byte a module of this package, named by the
  model's `mlops.model_code` metadata (`MODEL_CODE_KEY`), with no pickled class and only artifacts
  in formats that hold data, not code (`SAFE_ARTIFACT_SUFFIXES`; skops artifacts checked as above,
  `.pt` state_dicts read with torch's weights-only unpickler, which builds tensors and containers only).

Anything else is refused with a message naming the format, unless the operator passes
`--allow-unsafe-models`. Reading MLmodel (YAML) and listing a skops file's types run no model code.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_platform.errors import UserError
from mlops_platform.preprocessing import TRUSTED_TYPES as PREPROCESSING_TYPES
from mlops_platform.tracking.tags import MODEL_CODE_KEY

logger = logging.getLogger(__name__)

# Types beyond skops' own safe defaults that the models of training/sklearn_models.py hold once fitted,
# with the preprocessing of preprocessing.py in front (tests/test_model_safety.py fits them all and
# checks this list covers them).
TRUSTED_SKOPS_TYPES = frozenset(
    {
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.tree._tree.Tree",
        "sklearn.utils._bunch.Bunch",
        *PREPROCESSING_TYPES,
    }
)
# Artifact files a models-from-code model of ours may carry: tensors, skops (type-checked) and text.
# A `.pt` file is a state_dict: checked here, and loaded by our code, with torch.load(weights_only=True).
SAFE_ARTIFACT_SUFFIXES = (".safetensors", ".pt", ".skops", ".json", ".txt")

ALLOW_UNSAFE_OPTION = "--allow-unsafe-models"
_PICKLE_FLAG = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
_SKLEARN_LOADER = "mlflow.sklearn"
_PYTORCH_LOADER = "mlflow.pytorch"
_CODE_LOADER = "mlflow.pyfunc.loaders.code_model"
# The pickle flag is process-wide; loads that set it take turns.
_FLAG_LOCK = threading.Lock()
# MLflow 3.18 deprecates the pickle flag for MLFLOW_ALLOW_MODEL_CODE_EXECUTION, which refuses every
# pyfunc load when false (our pt2, skops and models-from-code loads included), so the old flag is
# the only switch that refuses pickles alone; MLflow honours it, and warns at every load it is set for.
# tests/test_model_safety.py checks that MLflow still refuses a pickle under it.
_PICKLE_FLAG_DEPRECATED = f"Environment variable {_PICKLE_FLAG} is deprecated"


class UnsafeModelError(UserError):
    """The model is stored in a format whose loading can run code from the model."""


@dataclass(frozen=True)
class LoadPlan:
    """How a checked model is loaded.

    Attributes:
        format: "skops", "pt2", "code" (our models-from-code) or "unsafe" (allowed by the operator).
        allow_pickle: the value of MLflow's pickle flag while loading: False wherever MLflow's own
            checks (pt2 archive validation, refusal of pickled classes) add to ours.
    """

    format: str
    allow_pickle: bool


def check_model(path: str | Path, allow_unsafe: bool = False) -> LoadPlan:
    """Decide whether the downloaded model at `path` may be loaded; raises UnsafeModelError if not."""
    try:
        return _plan(Path(path))
    except UnsafeModelError as error:
        if not allow_unsafe:
            raise
        logger.warning("loading a model that can run code (%s allowed it): %s", ALLOW_UNSAFE_OPTION, error)
        return LoadPlan("unsafe", allow_pickle=True)


@contextlib.contextmanager
def loading(plan: LoadPlan) -> Iterator[None]:
    """MLflow's pickle flag set as `plan` says for the duration of one load."""
    with _FLAG_LOCK:
        # At each load, not once at import: a filter added later (pytest adds its own per test) would
        # otherwise come first. Adding the same filter again moves it to the front, no more.
        warnings.filterwarnings("ignore", message=_PICKLE_FLAG_DEPRECATED, category=FutureWarning)
        previous = os.environ.get(_PICKLE_FLAG)
        os.environ[_PICKLE_FLAG] = "true" if plan.allow_pickle else "false"
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(_PICKLE_FLAG, None)
            else:
                os.environ[_PICKLE_FLAG] = previous


def untrusted_skops_types(file: str | Path) -> list[str]:
    """The types in a skops file that are in neither skops' safe defaults nor our list."""
    import skops.io

    try:
        types = skops.io.get_untrusted_types(file=str(file))
    except Exception as error:  # not a skops archive at all: refuse rather than guess
        raise UnsafeModelError(f"{Path(file).name} is not a readable skops file: {error}") from None
    return sorted(set(types) - TRUSTED_SKOPS_TYPES)


def load_skops(file: str | Path) -> Any:
    """Load a skops file trusting only our list; raises UnsafeModelError naming any other type."""
    import skops.io

    extra = untrusted_skops_types(file)
    if extra:
        raise _refusal(f"{Path(file).name} holds types no trainer of ours produces: {_names(extra)}")
    return skops.io.load(str(file), trusted=sorted(TRUSTED_SKOPS_TYPES))


def _plan(path: Path) -> LoadPlan:
    import yaml

    mlmodel_file = path / "MLmodel"
    if not mlmodel_file.is_file():
        raise UnsafeModelError(f"{path} holds no MLmodel file")
    mlmodel = yaml.safe_load(mlmodel_file.read_text()) or {}
    flavors = mlmodel.get("flavors") or {}
    pyfunc = flavors.get("python_function") or {}
    loader = pyfunc.get("loader_module")
    if pyfunc.get("code") or (flavors.get(loader.rsplit(".", 1)[-1], {}) if loader else {}).get("code"):
        raise _refusal("it bundles code directories (code_paths) that loading would import")
    if loader == _SKLEARN_LOADER:
        return _plan_sklearn(path, flavors.get("sklearn") or {}, pyfunc)
    if loader == _PYTORCH_LOADER:
        return _plan_pytorch(path, pyfunc)
    if loader == _CODE_LOADER:
        return _plan_code(path, pyfunc, mlmodel.get("metadata") or {})
    if loader == "mlflow.pyfunc.model":
        raise _refusal("it is a python_model stored with cloudpickle")
    raise _refusal(f"its loader {loader!r} is not one of the formats that cannot run code")


def _plan_sklearn(path: Path, flavor: dict, pyfunc: dict) -> LoadPlan:
    serialization = flavor.get("serialization_format", "pickle")
    if serialization != "skops":
        raise _refusal(f"it is a scikit-learn model stored with {serialization}")
    extra = untrusted_skops_types(_inside(path, pyfunc.get("model_path") or flavor.get("pickled_model", "")))
    if extra:
        raise _refusal(f"its skops file holds types no trainer of ours produces: {_names(extra)}")
    # MLflow refuses every sklearn format while its pickle flag is off; the types are checked above.
    return LoadPlan("skops", allow_pickle=True)


def _plan_pytorch(path: Path, pyfunc: dict) -> LoadPlan:
    data = _inside(path, pyfunc.get("data") or "data")
    if (data / "model.pth").exists() or not (data / "model.pt2").is_file():
        raise _refusal("it is a PyTorch model stored with pickle (log it with serialization_format='pt2')")
    return LoadPlan("pt2", allow_pickle=False)


def _plan_code(path: Path, pyfunc: dict, metadata: dict) -> LoadPlan:
    module = metadata.get(MODEL_CODE_KEY)
    code_file = _inside(path, os.path.basename(str(pyfunc.get("model_code_path", ""))))
    ours = _our_module_source(module)
    if ours is None or not code_file.is_file() or code_file.read_bytes() != ours.read_bytes():
        raise _refusal(
            f"its python_model code is not a module of this package (metadata {MODEL_CODE_KEY}="
            f"{module!r} must name one whose source the model's code file equals)"
        )
    for name, info in (pyfunc.get("artifacts") or {}).items():
        artifact = _inside(path, (info or {}).get("path", ""))
        files = [artifact] if artifact.is_file() else [p for p in artifact.rglob("*") if p.is_file()]
        for file in files:
            if not file.name.endswith(SAFE_ARTIFACT_SUFFIXES):
                raise _refusal(f"its artifact {name!r} holds {file.name}, not a data-only format")
            if file.suffix == ".skops" and (extra := untrusted_skops_types(file)):
                raise _refusal(f"its artifact {file.name} holds types we do not trust: {_names(extra)}")
            if file.suffix == ".pt":
                _check_tensors_only(file)
    return LoadPlan("code", allow_pickle=False)


def _check_tensors_only(file: Path) -> None:
    """A `.pt` artifact must load with torch's weights-only unpickler (tensors, numbers, containers)."""
    import pickle

    import torch

    try:
        torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise _refusal(f"its artifact {file.name} is not a tensors-only state_dict ({first})") from None


def _our_module_source(module: Any) -> Path | None:
    if not isinstance(module, str) or not module.startswith("mlops_platform."):
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin else None


def _inside(root: Path, relative: str) -> Path:
    """`root/relative`, refused when it leaves `root` (an MLmodel is data written by the model's author)."""
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise UnsafeModelError(f"the model names a file outside its own folder: {relative!r}")
    return target


def _names(types: list[str]) -> str:
    shown = ", ".join(types[:5])
    return shown + (f" and {len(types) - 5} more" if len(types) > 5 else "")


def _refusal(reason: str) -> UnsafeModelError:
    return UnsafeModelError(
        f"refusing to load this model: {reason}, and loading it could run code from whoever logged it. "
        "Serve models logged by our trainers (scikit-learn as skops, PyTorch as our models-from-code), "
        f"or pass {ALLOW_UNSAFE_OPTION} if you trust everyone who can log to this registry."
    )
