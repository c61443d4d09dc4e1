"""Log the torch trainer's classifier as our models-from-code pyfunc (mlops_platform/torch_pyfunc.py).

The signature is column-based with the table's original names and types, every column required
(signatures.py), so MLflow's schema enforcement and `mlops serve` match columns by name, in any order,
and refuse a request that lacks one. A torch.export (`pt2`) model cannot have that signature (MLflow
requires a tensor one for it), which is why the trainer logs this instead.
"""

from __future__ import annotations

import tempfile
import warnings
from typing import Any

from mlops_platform.model_safety import MODEL_CODE_KEY
from mlops_platform.tracking.signatures import _INTEGER_SCHEMA_HINT, column_signature

# What loading needs besides MLflow (which adds itself) and this package (which the code file imports).
_MODEL_PACKAGES = ("torch", "numpy", "pandas", "scikit-learn", "skops")


def log_torch_classifier(
    run: Any,
    module: Any,
    network: dict[str, Any],
    preprocessor: Any,
    example: Any,
    registered_model_name: str | None = None,
    metadata: dict[str, Any] | None = None,
    **log_kwargs: Any,
) -> Any:
    """Log one trained classifier as the run's model; returns the ModelInfo.

    Args:
        run: the tracked run (or a RecordingRun).
        module: the trained `ExportedClassifier` (standardization + network + softmax).
        network: `build_model`'s arguments plus `feature_names` (input columns) and `class_labels`.
        preprocessor: the fitted ColumnTransformer for tables, None for numeric tables without gaps.
        example: a few training rows (DataFrame of the raw input columns): the input example.
        metadata: more MLmodel metadata (column roles).
        log_kwargs: passed on to `run.log_model`.
    """
    from mlops_platform.torch_pyfunc import CODE_MODULE, TorchClassifier, code_file, write_artifacts

    output = TorchClassifier.from_parts(module, network, preprocessor).predict(None, example)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_INTEGER_SCHEMA_HINT, category=UserWarning)
        signature = column_signature(example, output)
    with tempfile.TemporaryDirectory(prefix="mlops-torch-model-") as folder:
        artifacts = write_artifacts(folder, module, network, preprocessor)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_INTEGER_SCHEMA_HINT, category=UserWarning)
            return run.log_model(
                "pyfunc",
                str(code_file()),
                input_example=example,
                signature=signature,
                registered_model_name=registered_model_name,
                artifacts=artifacts,
                # Stated, not inferred: inference loads the model in a subprocess (seconds per model).
                pip_requirements=_pinned(_MODEL_PACKAGES),
                metadata={
                    MODEL_CODE_KEY: CODE_MODULE,
                    "feature_names": list(network["feature_names"]),
                    "class_labels": list(network["class_labels"]),
                    "output": "class probabilities, one column per class_labels entry",
                    **(metadata or {}),
                },
                **log_kwargs,
            )


def _pinned(distributions: tuple[str, ...]) -> list[str]:
    from importlib import metadata

    # Without a local label such as +cpu, which no index serves.
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in distributions]
