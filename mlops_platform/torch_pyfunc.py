"""The torch trainer's logged model: an MLflow models-from-code pyfunc that takes the RAW named columns.

MLflow loads it by running the code file torch_pyfunc_code.py (copied into the model byte for byte, which
model_safety checks against this package's own file), so no pickled class is ever loaded. Its artifacts
hold data only:

- `network.json`: the architecture (`build_model`'s arguments), the input columns in order, the class
  labels;
- `weights.pt`: the `ExportedClassifier`'s state_dict, tensors only (`torch.load(weights_only=True)`);
- `preprocessor.skops` (tables only): the fitted ColumnTransformer of preprocessing.py, loaded trusting
  only our types (model_safety.load_skops). Numeric tables without gaps have none: their standardization
  is inside the network as buffers, so the served model is one torch module (serving's fast path).

Contract: `predict(DataFrame with the input columns, any order)` -> float32 array (n_rows, n_classes) of
class probabilities; column i is `class_labels[i]` of the model's metadata. Missing values are taken
where the table had a preprocessor (imputed as in training); an unseen category is encoded as unknown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.pyfunc import PythonModel

# The dotted name of the code file's module: the MLmodel metadata model_safety checks (MODEL_CODE_KEY).
CODE_MODULE = "mlops_platform.torch_pyfunc_code"
NETWORK_ARTIFACT = "network"
WEIGHTS_ARTIFACT = "weights"
PREPROCESSOR_ARTIFACT = "preprocessor"
_FILES = {
    NETWORK_ARTIFACT: "network.json",
    WEIGHTS_ARTIFACT: "weights.pt",
    PREPROCESSOR_ARTIFACT: "preprocessor.skops",
}


def code_file() -> Path:
    """The models-from-code file logged as the model's code."""
    return Path(__file__).with_name("torch_pyfunc_code.py")


def write_artifacts(
    folder: str | Path, module: Any, network: dict[str, Any], preprocessor: Any
) -> dict[str, str]:
    """Write the artifacts of one model into `folder`; returns {artifact name: path} for log_model.

    Args:
        module: the trained `ExportedClassifier` (standardization + network + softmax).
        network: `build_model` arguments plus `feature_names` and `class_labels` (JSON-ready).
        preprocessor: the fitted ColumnTransformer, or None for numeric tables without gaps.
    """
    import skops.io
    import torch

    folder = Path(folder)
    paths = {name: folder / file for name, file in _FILES.items()}
    paths[NETWORK_ARTIFACT].write_text(json.dumps(network, indent=1))
    # Tensors only, on the CPU: loadable with weights_only=True anywhere.
    state = {key: value.detach().cpu().contiguous() for key, value in module.state_dict().items()}
    torch.save(state, paths[WEIGHTS_ARTIFACT])
    if preprocessor is None:
        del paths[PREPROCESSOR_ARTIFACT]
    else:
        skops.io.dump(preprocessor, paths[PREPROCESSOR_ARTIFACT])
    return {name: str(path) for name, path in paths.items()}


class TorchClassifier(PythonModel):
    """Raw named columns -> class probabilities (see the module docstring)."""

    def __init__(self) -> None:
        self.module: Any = None
        self.preprocessor: Any = None
        self.feature_names: list[str] = []

    @classmethod
    def from_parts(cls, module: Any, network: dict[str, Any], preprocessor: Any) -> TorchClassifier:
        """The model as it will load, from the trained parts (to compute the signature's output)."""
        model = cls()
        model.module, model.preprocessor = module.cpu().eval(), preprocessor
        model.feature_names = list(network["feature_names"])
        return model

    def load_context(self, context: Any) -> None:
        import torch

        from mlops_platform.model_safety import load_skops
        from mlops_platform.training.models import ExportedClassifier, Standardizer, build_model

        network = json.loads(Path(context.artifacts[NETWORK_ARTIFACT]).read_text())
        width = int(network["n_features"])
        classifier = ExportedClassifier(
            Standardizer(np.zeros(width), np.ones(width)),
            build_model(
                network["model"],
                width,
                int(network["n_classes"]),
                hidden_sizes=tuple(network["hidden_sizes"]),
                channels=tuple(network["channels"]),
                dropout=float(network["dropout"]),
                image_shape=tuple(network["image_shape"]) if network.get("image_shape") else None,
            ),
        )
        state = torch.load(context.artifacts[WEIGHTS_ARTIFACT], map_location="cpu", weights_only=True)
        classifier.load_state_dict(state, strict=True)
        self.module = classifier.eval()
        path = context.artifacts.get(PREPROCESSOR_ARTIFACT)
        self.preprocessor = load_skops(path) if path else None
        self.feature_names = list(network["feature_names"])

    # No type hints: MLflow would read them as a schema of their own; the signature is the column one.
    def predict(self, context, model_input, params=None):
        import pandas as pd

        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input, columns=self.feature_names)
        # By name: MLflow's schema enforcement has checked the columns; the order is the training one.
        frame = model_input[self.feature_names]
        if self.preprocessor is None:
            features = frame.to_numpy(np.float32)
        else:
            features = np.asarray(self.preprocessor.transform(frame), dtype=np.float32)
        return self.predict_array(features)

    def predict_array(self, features: np.ndarray) -> np.ndarray:
        """Probabilities for network inputs (after preprocessing), float32 (n_rows, n_classes)."""
        import torch

        with torch.no_grad():
            return self.module(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))).numpy()
