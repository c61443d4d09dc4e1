"""The JSON of a model's predictions, as MLflow's scoring server writes it (a leaf: the fast path, the
table path and the pyfunc checks all write answers through it)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson


def predictions_json(output: Any) -> bytes:
    """The JSON of a prediction output, valued exactly as MLflow's scoring server writes it."""
    if isinstance(output, np.ndarray):
        output = np.ascontiguousarray(output)  # orjson serializes C-contiguous arrays only
        if output.dtype.kind == "f":
            # float32 -> float64 first: MLflow writes float32 outputs via Python floats, i.e. their exact
            # float64 values, where orjson would write float32's shortest text.
            return orjson.dumps(output.astype(np.float64, copy=False), option=orjson.OPT_SERIALIZE_NUMPY)
        if output.dtype.kind in "iub":
            return orjson.dumps(output, option=orjson.OPT_SERIALIZE_NUMPY)
        return orjson.dumps(output.tolist(), option=orjson.OPT_SERIALIZE_NUMPY)
    return orjson.dumps(output)
