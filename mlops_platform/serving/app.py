"""The scoring server: a starlette app on uvicorn speaking MLflow's scoring protocol.

Routes: `POST /invocations` (JSON `dataframe_split` / `dataframe_records` / `instances` / `inputs`, or
CSV), `GET /ping` and `/health` (liveness; /health also says what is served), `GET /version` (model
name, version, run id). Valid requests get exactly `mlflow models serve`'s answer; refused ones get
MLflow's error shape `{"error_code": ..., "message": ...}` with 400/413/415/422, and only a short
reason is logged, never the payload.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlops_platform.serving.config import ServeConfig
from mlops_platform.serving.errors import RequestError
from mlops_platform.serving.parsing import media_type, parse_request
from mlops_platform.serving.prediction_log import PredictionLog
from mlops_platform.serving.predictors import ModelIdentity, ServedModel, load_served_model, run_fallback
from mlops_platform.serving.reload import AliasFollower, ModelHolder

logger = logging.getLogger("mlops_platform.serving")

# Environment variable through which `serve()` hands its config to uvicorn worker processes.
CONFIG_ENV = "MLOPS_SERVE_CONFIG"
JSON = "application/json"


def _error(status: int, code: str, message: str) -> Response:
    return Response(orjson.dumps({"error_code": code, "message": message}), status, media_type=JSON)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(f"invalid Content-Length header {declared[:20]!r}", 400)
        if int(declared) > limit:
            raise RequestError(f"request body of {declared} bytes exceeds the limit of {limit} bytes", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"request body exceeds the limit of {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


class ScoringService:
    """The state behind the routes: the served model, its alias follower and the prediction log."""

    def __init__(self, config: ServeConfig, tracking_uri: str):
        self.config = config
        self.tracking_uri = tracking_uri
        self.holder = ModelHolder(self.load())
        self.follower: AliasFollower | None = None
        if config.reload_interval > 0 and AliasFollower.applies_to(config.model_uri):
            self.follower = AliasFollower(self.holder, tracking_uri, config.reload_interval, self.load)
        self.prediction_log = PredictionLog(config.log_predictions) if config.log_predictions else None
        self.started_at = time.time()
        self.served = 0
        self.refused = 0

    def load(self, identity: ModelIdentity | None = None) -> ServedModel:
        return load_served_model(
            self.config.model_uri,
            self.tracking_uri,
            self.config.max_batch_size,
            self.config.max_wait_ms,
            identity=identity,
            allow_unsafe=self.config.allow_unsafe_models,
        )

    async def invocations(self, request: Request) -> Response:
        model = self.holder.current  # this request finishes with this model, whatever reloads meanwhile
        try:
            body = await read_body(request, self.config.max_body_bytes)
            content_type = request.headers.get("content-type")
            if not model.fast:
                media_type(content_type)  # 415 for what MLflow would refuse too, before a thread hop
                status, content = await run_fallback(model, body, content_type)
                self.served += status == 200
                return Response(content, status, media_type=JSON)
            parsed = parse_request(body, content_type)
            if parsed.params:  # inference params: only MLflow's own path knows what they mean
                status, content = await run_fallback(model, body, content_type)
                return Response(content, status, media_type=JSON)
            array = model.validator.to_array(parsed)
            try:
                output = await model.predict_async(array)
                payload = model.output_json(output)
            except Exception as error:
                logger.warning(
                    "model %s failed on a %s-row request: %s",
                    model.identity.resolved_uri,
                    len(array),
                    type(error).__name__,
                )
                raise RequestError(
                    f"the model could not evaluate this input: {type(error).__name__}: {str(error)[:200]}",
                    400,
                ) from None
        except RequestError as error:
            self.refused += 1
            logger.warning("refused request: %s %s", error.status, error.message[:200])
            return _error(error.status, error.error_code, error.message)
        self.served += 1
        if self.prediction_log is not None:
            names = list(model.validator.spec.names) or None
            self.prediction_log.record(model.identity.as_dict(), names, array, payload)
        return Response(b'{"predictions": ' + payload + b"}", media_type=JSON)

    async def ping(self, request: Request) -> Response:
        return Response("\n", media_type=JSON)  # what `mlflow models serve` answers

    async def health(self, request: Request) -> Response:
        model = self.holder.current
        return Response(
            orjson.dumps(
                {
                    "status": "ok",
                    "uptime_s": round(time.time() - self.started_at, 1),
                    "model_name": model.identity.name,
                    "model_version": model.identity.version,
                    "served": self.served,
                    "refused": self.refused,
                    "batched_calls": model.batcher.batches if model.batcher else None,
                    "batched_rows": model.batcher.rows if model.batcher else None,
                }
            ),
            media_type=JSON,
        )

    async def version(self, request: Request) -> Response:
        import mlflow

        model = self.holder.current
        info: dict[str, Any] = {
            **model.identity.as_dict(),
            "flavor": model.flavor,
            "loaded_at": model.loaded_at,
            "reloads": self.holder.swaps,
            "mlflow_version": mlflow.__version__,
        }
        return Response(orjson.dumps(info), media_type=JSON)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette):
        if self.follower is not None:
            self.follower.start()
        if self.prediction_log is not None:
            self.prediction_log.start()
        logger.info(
            "serving %s (%s) on pid %d",
            self.holder.current.identity.resolved_uri,
            self.holder.current.flavor,
            os.getpid(),
        )
        try:
            yield
        finally:
            if self.follower is not None:
                await self.follower.stop()
            if self.prediction_log is not None:
                await self.prediction_log.close()
            self.holder.current.close()


def _configure_logging() -> None:
    package_logger = logging.getLogger("mlops_platform")
    if not package_logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        package_logger.addHandler(handler)
        package_logger.setLevel(logging.INFO)
        # uvicorn's worker processes give the root logger a handler too: one line per record is enough.
        package_logger.propagate = False


def create_app(config: ServeConfig) -> Starlette:
    """Load the model and build the app; raises UserError when the model cannot be served."""
    from mlops_platform.settings import resolve_tracking_uri

    _configure_logging()
    # A progress bar per model download is noise in a server log (and on every reload).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    tracking_uri = resolve_tracking_uri(config.tracking_uri)
    service = ScoringService(config, tracking_uri)
    routes = [
        Route("/invocations", service.invocations, methods=["POST"]),
        Route("/ping", service.ping, methods=["GET"]),
        Route("/health", service.health, methods=["GET"]),
        Route("/version", service.version, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=service.lifespan)
    app.state.service = service
    return app


def create_app_from_env() -> Starlette:
    """The app factory uvicorn worker processes call (config from CONFIG_ENV)."""
    return create_app(ServeConfig.from_json(os.environ[CONFIG_ENV]))


def serve(config: ServeConfig) -> None:
    """Run the server in the foreground until interrupted."""
    import uvicorn

    from mlops_platform.settings import resolve_tracking_uri

    config = config.model_copy(update={"tracking_uri": resolve_tracking_uri(config.tracking_uri)})
    common: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        # Per-request access logging costs as much as a small model's prediction; refusals are logged.
        "access_log": False,
        "log_level": "info",
        "timeout_graceful_shutdown": 10,
    }
    if config.workers == 1:
        uvicorn.run(create_app(config), **common)
        return
    # Each worker process loads its own copy; fail here, once, if the model URI cannot be resolved.
    from mlops_platform.serving.predictors import resolve_identity

    resolve_identity(config.model_uri, config.tracking_uri)
    os.environ[CONFIG_ENV] = config.to_json()
    uvicorn.run(f"{__name__}:create_app_from_env", factory=True, workers=config.workers, **common)
