"""Load a logged model once and predict with it: natively where we can, through pyfunc where we cannot.

`load_served_model` downloads the model, reads its signature and picks a predictor:
- scikit-learn flavor: the fitted estimator's own `predict` (or the `pyfunc_predict_fn` it was logged
  with) on a numpy array;
- pytorch flavor: the module in eval mode under `torch.no_grad()` on a numpy array, with concurrent
  requests micro-batched; the same for the torch trainer's models-from-code pyfunc (torch_pyfunc.py)
  when its input is numeric columns without a preprocessor (its network is then the whole model);
- our trainers' models of tables with strings, booleans or gaps (a fitted preprocessor inside): the
  table path of tables.py, which types requests as MLflow does and batches their preprocessing;
- anything else, or a model whose native output differs from pyfunc's on its own input example:
  MLflow's scoring code itself (`mlflow.pyfunc.scoring_server.invocations`), in a worker thread.
The per-request cost of pyfunc (schema enforcement through pandas) is what the native path avoids;
the result is the same JSON, checked at load time on the input example.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from mlops_platform.errors import UserError
from mlops_platform.model_safety import UnsafeModelError, check_model, loading
from mlops_platform.serving.batching import MicroBatcher
from mlops_platform.serving.config import ServeConfig
from mlops_platform.serving.errors import RequestError
from mlops_platform.serving.output import predictions_json
from mlops_platform.serving.parsing import CONTENT_TYPE_CSV, CONTENT_TYPE_PARQUET, media_type
from mlops_platform.serving.tables import TableModel, check_against_pyfunc, table_model
from mlops_platform.serving.validation import InputSpec, Validator

logger = logging.getLogger(__name__)

_SKLEARN_PREDICT_FNS = ("predict", "predict_proba", "predict_log_proba", "predict_joint_log_proba")
# Longest MLflow error text we pass on: its messages can quote the whole input.
_MAX_FALLBACK_MESSAGE = 500


@dataclass(frozen=True)
class ModelIdentity:
    """Which model is served: what /version reports.

    Attributes:
        model_uri: the URI as given (may name an alias).
        resolved_uri: the URI actually loaded (an alias pinned to its version).
        artifact_uri: where its files are; downloaded with the explicit tracking URI, because MLflow
            resolves `models:/` URIs against its global registry URI, not the one we were given.
        name / version / alias: registry coordinates, when the URI names a registered model.
        run_id / model_id: the run that logged it and the LoggedModel id, when known.
    """

    model_uri: str
    resolved_uri: str
    artifact_uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    model_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_uri": self.model_uri,
            "model_name": self.name,
            "model_version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "model_id": self.model_id,
        }


def parse_registry_uri(model_uri: str) -> tuple[str | None, str | None, str | None]:
    """(name, version, alias) of a `models:/name/version` or `models:/name@alias` URI, else Nones."""
    if not model_uri.startswith("models:/"):
        return None, None, None
    rest = model_uri[len("models:/") :].strip("/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        return name, None, alias
    name, _, version = rest.partition("/")
    if version.isdigit():
        return name, version, None
    return None, None, None  # models:/<model_id>: a LoggedModel, not a registry entry


def resolve_identity(model_uri: str, tracking_uri: str) -> ModelIdentity:
    """Pin `model_uri` to what it names now (an alias to its current version); raises UserError."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name, version, alias = parse_registry_uri(model_uri)
    try:
        if name and (version or alias):
            mv = (
                client.get_model_version_by_alias(name, alias)
                if alias
                else client.get_model_version(name, version)
            )
            return ModelIdentity(
                model_uri,
                f"models:/{name}/{mv.version}",
                client.get_model_version_download_uri(name, mv.version),
                name,
                str(mv.version),
                alias,
                mv.run_id,
                getattr(mv, "model_id", None),
            )
        if model_uri.startswith("models:/"):
            model_id = model_uri[len("models:/") :].strip("/")
            logged = client.get_logged_model(model_id)
            return ModelIdentity(
                model_uri, model_uri, logged.artifact_location, run_id=logged.source_run_id, model_id=model_id
            )
    except MlflowException as error:
        raise UserError(
            f"cannot resolve model URI {model_uri!r} on {tracking_uri}: {error.message}"
        ) from None
    run_id = model_uri[len("runs:/") :].split("/", 1)[0] if model_uri.startswith("runs:/") else None
    return ModelIdentity(model_uri, model_uri, model_uri, run_id=run_id)


@dataclass
class ServedModel:
    """A loaded model and the way we predict with it."""

    identity: ModelIdentity
    flavor: str  # "sklearn", "pytorch" or "pyfunc" (the fallback)
    pyfunc_model: Any
    validator: Validator | None
    local_path: str
    loaded_at: float = field(default_factory=time.time)
    native: Any = None
    predict_fn: str = "predict"
    records_output: bool = False  # torch model with a column signature: MLflow answers with records
    # Column signature: every column a request must name (checked on the pyfunc path too).
    required_columns: tuple[str, ...] = ()
    max_batch_size: int = 1024
    batcher: MicroBatcher | None = None
    _executor: ThreadPoolExecutor | None = None
    largest_call: int = 0  # most rows in one model call so far (for /health)
    # A table model (strings, booleans, gaps) served natively: rows of JSON values, not a numeric array.
    table: TableModel | None = None

    @property
    def fast(self) -> bool:
        return self.validator is not None

    @property
    def takes_params(self) -> bool:
        """The signature declares inference params (MLflow ignores params of a model that does not)."""
        return self.pyfunc_model.metadata.get_params_schema() is not None

    # Native prediction.

    def predict_array(self, array: np.ndarray) -> np.ndarray:
        """The native model's raw output for a validated array (any thread)."""
        if self.table is not None:
            return self.table.predict(array)
        if self.flavor == "sklearn":
            # A batch stacked from several requests comes back in row order; restore the column order.
            array = np.asarray(array, order=self.validator.order)
            return np.asarray(getattr(self.native, self.predict_fn)(array))
        import torch

        with torch.no_grad():
            output = self.native(torch.from_numpy(array))
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"the torch module returned {type(output).__name__}, not a tensor")
        return output.numpy()

    async def predict_async(self, array: np.ndarray) -> np.ndarray:
        """The output for `array`, in model calls of at most `max_batch_size` rows, never on the event
        loop: a large request is split, and other requests' calls interleave with its parts."""
        # A table request goes to the model whole, as MLflow's: its network sums over the request's rows.
        step = max(1, len(array)) if self.table is not None else self.max_batch_size
        chunks = [array[start : start + step] for start in range(0, len(array), step)]
        if self.batcher is not None:
            outputs = await asyncio.gather(*(self.batcher.submit(chunk) for chunk in chunks))
        else:
            loop = asyncio.get_running_loop()
            outputs = []
            for chunk in chunks:
                self.largest_call = max(self.largest_call, len(chunk))
                outputs.append(await loop.run_in_executor(self._executor, self.predict_array, chunk))
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    @property
    def largest_model_call(self) -> int:
        return max(self.largest_call, self.batcher.largest if self.batcher else 0)

    def output_json(self, output: np.ndarray) -> bytes:
        if self.records_output:
            # MLflow wraps a torch output in a DataFrame (integer column names) and writes records.
            matrix = output.reshape(len(output), -1).astype(np.float64)
            keys = [str(i) for i in range(matrix.shape[1])]
            return orjson.dumps([dict(zip(keys, row, strict=True)) for row in matrix.tolist()])
        return predictions_json(output)

    # The pyfunc fallback: MLflow's own request handling.

    def fallback_response(self, body: bytes, content_type: str) -> tuple[int, bytes]:
        """(status, JSON body) exactly as `mlflow models serve` computes them, messages shortened."""
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc import scoring_server

        try:
            result = scoring_server.invocations(
                body, content_type, self.pyfunc_model, self.pyfunc_model.metadata.get_input_schema()
            )
        except MlflowException as error:
            message = error.message
            if len(message) > _MAX_FALLBACK_MESSAGE:
                message = message[:_MAX_FALLBACK_MESSAGE] + "... (shortened)"
            code = error.error_code if isinstance(error.error_code, str) else "BAD_REQUEST"
            return error.get_http_status_code(), orjson.dumps({"error_code": code, "message": message})
        if result.status != 200:
            raise RequestError(result.response[:_MAX_FALLBACK_MESSAGE], result.status)
        return 200, result.response.encode()

    def fallback_inputs(self, body: bytes, content_type: str) -> tuple[list[str] | None, np.ndarray] | None:
        """The input MLflow's pyfunc path scored, as (column names, object rows) for the prediction log:
        parsed again with MLflow's own parsers, so the log holds what the model saw (strings, booleans
        and gaps included). None when that input is not a table or a 2-D array (nothing to log)."""
        import io

        import pandas as pd
        from mlflow.pyfunc import scoring_server

        schema = self.pyfunc_model.metadata.get_input_schema()
        kind = media_type(content_type)
        if kind == CONTENT_TYPE_CSV:
            data = scoring_server.parse_csv_input(io.StringIO(body.decode("utf-8")), schema=schema)
        elif kind == CONTENT_TYPE_PARQUET:
            data = scoring_server.parse_parquet_input(io.BytesIO(body))
        else:
            data = scoring_server._parse_json_data(body, self.pyfunc_model.metadata, schema).data
        if isinstance(data, pd.DataFrame):
            # Missing values of any kind (NaN, None, pd.NA) as JSON null, every other value as it came.
            rows = data.astype(object).where(data.notna(), None).to_numpy()
            return [str(column) for column in data.columns], rows
        if isinstance(data, np.ndarray) and data.ndim == 2:
            return None, data
        return None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        shutil.rmtree(self.local_path, ignore_errors=True)


def load_served_model(
    model_uri: str,
    tracking_uri: str,
    max_batch_size: int = ServeConfig.model_fields["max_batch_size"].default,
    max_wait_ms: float = ServeConfig.model_fields["max_wait_ms"].default,
    identity: ModelIdentity | None = None,
    allow_unsafe: bool = False,
) -> ServedModel:
    """Download, check (model_safety), load and self-check a model; raises UserError when it cannot be
    loaded, UnsafeModelError when its format could run code and `allow_unsafe` is not set."""
    import mlflow
    from mlflow.exceptions import MlflowException

    identity = identity or resolve_identity(model_uri, tracking_uri)
    local_path = tempfile.mkdtemp(prefix="mlops-serve-")
    try:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=identity.artifact_uri, dst_path=local_path, tracking_uri=tracking_uri
        )
        plan = check_model(path, allow_unsafe)
        with loading(plan):
            pyfunc_model = mlflow.pyfunc.load_model(path)
    except UnsafeModelError as error:
        shutil.rmtree(local_path, ignore_errors=True)
        raise UnsafeModelError(f"{identity.resolved_uri}: {error}") from None
    except (MlflowException, OSError) as error:
        shutil.rmtree(local_path, ignore_errors=True)
        raise UserError(f"cannot load model {identity.resolved_uri}: {error}") from None
    except BaseException:
        shutil.rmtree(local_path, ignore_errors=True)
        raise
    served = ServedModel(identity, "pyfunc", pyfunc_model, None, local_path, max_batch_size=max_batch_size)
    try:
        if not _make_table(served, path, max_wait_ms):
            _choose_predictor(served, path, max_wait_ms)
    except BaseException:
        served.close()
        raise
    return served


def _choose_predictor(served: ServedModel, path: str, max_wait_ms: float) -> None:
    """Serve natively when the signature and flavor allow and the self-check agrees; else via pyfunc."""
    metadata = served.pyfunc_model.metadata
    schema = metadata.get_input_schema()
    if schema is not None and not schema.is_tensor_spec():
        served.required_columns = tuple(c.name for c in schema.inputs if c.name and c.required)
    spec = InputSpec.from_schema(schema)
    if spec is None:
        logger.info("model %s: no numeric signature, serving through pyfunc", served.identity.resolved_uri)
        return
    if "sklearn" in metadata.flavors:
        _make_sklearn(served, spec)
    elif "pytorch" in metadata.flavors:
        _make_torch(served, spec)
    elif spec.kind == "columns":
        _make_torch_code(served, spec)
    if not served.fast:
        return
    served._executor = ThreadPoolExecutor(1, thread_name_prefix=f"{served.flavor}-predict")
    if spec.width is not None:
        # Rows are predicted independently by sklearn estimators and by torch modules in eval mode, and
        # flat (-1, n) rows from several requests stack into one array: micro-batch concurrent requests.
        served.batcher = MicroBatcher(
            served.predict_array, served._executor, served.max_batch_size, max_wait_ms / 1e3
        )
    _self_check(served, path)


def _make_table(served: ServedModel, path: str, max_wait_ms: float) -> bool:
    """Serve a table model (preprocessor inside) on the table path, when its input example is answered
    bit for bit as pyfunc answers it, batched and alone; True when it is."""
    table = table_model(served.pyfunc_model)
    if table is None:
        return False
    served.required_columns = table.names
    try:
        checked = check_against_pyfunc(table, served.pyfunc_model, _input_example(served, path))
    except Exception as error:
        logger.warning(
            "model %s: table path disabled, serving through pyfunc: %s", identity_of(served), error
        )
        return True  # the pyfunc path, with its missing-column check
    if not checked:
        logger.info("model %s: no usable input example; serving through pyfunc", identity_of(served))
        return True
    metadata = served.pyfunc_model.metadata
    served.flavor = "sklearn" if "sklearn" in metadata.flavors else "pytorch"
    served.table = table
    served._executor = ThreadPoolExecutor(1, thread_name_prefix=f"{served.flavor}-table")
    served.batcher = MicroBatcher(
        None, served._executor, served.max_batch_size, max_wait_ms / 1e3, parts_fn=table.predict_parts
    )
    return True


def _make_sklearn(served: ServedModel, spec: InputSpec) -> None:
    predict_fn = served.pyfunc_model.metadata.flavors["python_function"].get("predict_fn", "predict")
    if predict_fn not in _SKLEARN_PREDICT_FNS:
        return
    # A pipeline fitted on a DataFrame warns on every numpy call; the array's columns are already
    # checked by name against the signature, so the warning says nothing here.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    common = np.result_type(*spec.dtypes) if spec.kind == "columns" else spec.dtypes[0]
    served.flavor, served.predict_fn = "sklearn", predict_fn
    served.native = served.pyfunc_model.get_raw_model()
    # Column order ("F"), as MLflow's DataFrame hands it to sklearn: BLAS then sums in the same order and
    # float outputs (predict_proba) equal MLflow's to the last bit, not just to rounding.
    served.validator = Validator(spec, common, order="F" if spec.kind == "columns" else "C")


def _make_torch(served: ServedModel, spec: InputSpec) -> None:
    module = served.pyfunc_model.get_raw_model()
    # A torch.export program has its mode fixed at export time and refuses eval().
    with contextlib.suppress(NotImplementedError, RuntimeError):
        module.eval()
    served.flavor, served.native = "pytorch", module
    # MLflow feeds a column-signature torch model `DataFrame.to_numpy(float32)`, a tensor one its dtype.
    served.validator = Validator(spec, np.float32 if spec.kind == "columns" else spec.dtypes[0])
    served.records_output = spec.kind == "columns"


def _make_torch_code(served: ServedModel, spec: InputSpec) -> None:
    """Our torch models-from-code pyfunc on numeric columns: its network, fed as its predict feeds it."""
    from mlops_platform.torch_pyfunc import TorchClassifier

    try:
        python_model = served.pyfunc_model.unwrap_python_model()
    except Exception:  # not a python_model at all
        return
    if not isinstance(python_model, TorchClassifier) or python_model.preprocessor is not None:
        return
    if list(spec.names) != python_model.feature_names:
        return
    served.flavor, served.native = "pytorch", python_model.module
    # TorchClassifier.predict feeds the network `DataFrame.to_numpy(float32)` in signature order.
    served.validator = Validator(spec, np.float32)


def _self_check(served: ServedModel, path: str) -> None:
    """Fall back to pyfunc unless the native path answers the input example as pyfunc does; turn
    micro-batching off unless each row's answer is independent of its neighbours."""
    example = _input_example(served, path)
    if example is None:
        return
    try:
        array = _example_array(served, example)
        ours = orjson.loads(served.output_json(served.predict_array(array)))
        if not _same(ours, _pyfunc_answer(served, example)):
            raise ValueError("native output differs from pyfunc's on the input example")
        if served.batcher is not None and len(array) > 1 and not _rows_independent(served, array, ours):
            logger.warning("model %s: rows are not independent; micro-batching off", identity_of(served))
            served.batcher = None
    except Exception as error:
        logger.warning(
            "model %s: native path disabled, serving through pyfunc: %s", served.identity.resolved_uri, error
        )
        served.flavor, served.validator, served.batcher = "pyfunc", None, None


def _input_example(served: ServedModel, path: str) -> Any:
    try:
        return served.pyfunc_model.metadata.load_input_example(path)
    except Exception as error:  # an unreadable example only costs us the check
        logger.warning(
            "model %s: input example unreadable (%s); native path unchecked", served.identity, error
        )
        return None


def _example_array(served: ServedModel, example: Any) -> np.ndarray:
    """The input example as the validator would hand it to the native model."""
    import pandas as pd

    validator = served.validator
    if isinstance(example, pd.DataFrame):
        names = list(validator.spec.names) or list(example.columns)
        array = example[names].to_numpy(dtype=validator.dtype)
    else:
        array = np.asarray(example, dtype=validator.dtype)
    return np.asarray(array, order=validator.order)


def _pyfunc_answer(served: ServedModel, example: Any) -> Any:
    """pyfunc's predictions on the example, as MLflow's scoring server would write them (JSON-loaded)."""
    import pandas as pd

    expected = served.pyfunc_model.predict(example)
    if isinstance(expected, pd.DataFrame):
        return orjson.loads(
            orjson.dumps(
                expected.to_dict(orient="records"),
                option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
            )
        )
    return orjson.loads(predictions_json(np.asarray(expected)))


def _rows_independent(served: ServedModel, array: np.ndarray, together: Any) -> bool:
    """Batching is sound only if a row's answer does not depend on the rows beside it."""
    alone = np.concatenate([served.predict_array(array[i : i + 1]) for i in range(len(array))])
    return _same(orjson.loads(served.output_json(alone)), together)


def identity_of(served: ServedModel) -> str:
    return served.identity.resolved_uri


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return bool(np.isclose(a, b, rtol=1e-5, atol=1e-7))
    return a == b


async def run_fallback(model: ServedModel, body: bytes, content_type: str) -> tuple[int, bytes]:
    return await asyncio.to_thread(model.fallback_response, body, content_type)
