"""The scoring server: a starlette app on uvicorn speaking MLflow's scoring protocol.

Routes: `POST /invocations` (JSON `dataframe_split` / `dataframe_records` / `instances` / `inputs`,
CSV or Parquet), `GET /ping` (liveness, as MLflow), `GET /version` (the MLflow version as text, as
MLflow answers it, so `ScoringServerClient.get_version()` works), `GET /health` (what is served, counts,
reload state). Valid requests get exactly `mlflow models serve`'s answer; refused ones get MLflow's
error shape `{"error_code": ..., "message": ...}` with 400/413/415/422, and only a short reason is
logged, never the payload.

This module wires routes to the service; `scoring` parses and predicts, `reload` follows aliases.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlops_platform.serving import challenger as ab
from mlops_platform.serving.busy import BusyShare
from mlops_platform.serving.config import ServeConfig, parse_cpu_list
from mlops_platform.serving.errors import RequestError
from mlops_platform.serving.heap import CollectorClock, freeze_startup_heap
from mlops_platform.serving.prediction_log import PredictionLog
from mlops_platform.serving.predictors import ModelIdentity, ServedModel, load_served_model
from mlops_platform.serving.reload import ModelSlot
from mlops_platform.serving.scoring import Answer, score
from mlops_platform.serving.shadow import OFFLOAD_BYTES, ShadowJob, ShadowWorker
from mlops_platform.serving.shadow_worker import pack

logger = logging.getLogger("mlops_platform.serving")

# Environment variable through which `serve()` hands its config to uvicorn worker processes.
CONFIG_ENV = "MLOPS_SERVE_CONFIG"
JSON = "application/json"
REQUEST_ID_HEADER = "X-Request-Id"
# With --challenger: which model answered (its registry version, and "champion" or "challenger").
MODEL_VERSION_HEADER = "X-Model-Version"
MODEL_ROLE_HEADER = "X-Model-Role"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")


@functools.lru_cache(maxsize=64)
def _answered_by(version: str, role: str) -> tuple[tuple[bytes, bytes], ...]:
    """The raw header pairs naming the version and role that answered."""
    return (
        (MODEL_VERSION_HEADER.lower().encode("latin-1"), version.encode("latin-1")),
        (MODEL_ROLE_HEADER.lower().encode("latin-1"), role.encode("latin-1")),
    )


# A client's own request id is kept when it is short and plain; anything else gets ours.
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error_code": code, "message": message}), status, media_type=JSON, headers=headers
    )


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


def request_id_of(request: Request) -> str:
    sent = request.headers.get(REQUEST_ID_HEADER)
    return sent if sent and _CLIENT_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex


class ScoringService:
    """The state behind the routes: the served model slot(s) and the prediction log."""

    def __init__(self, config: ServeConfig, tracking_uri: str):
        self.config = config
        self.tracking_uri = tracking_uri
        self.champion = ModelSlot.open(config.model_uri, tracking_uri, config.reload_interval, self.load)
        self.challenger: ModelSlot | None = None
        self.champion_busy = BusyShare()  # kept by the shadow's request path, read by its admission test
        self.shadow = ShadowWorker(
            config.shadow_queue,
            self.shadow_settings,
            config.shadow_max_busy,
            self.shadow_counts,
            champion_busy=self.champion_busy,
        )
        if config.challenger:
            try:
                self.challenger = ModelSlot.open(
                    config.challenger, tracking_uri, config.reload_interval, self.load_challenger
                )
            except BaseException:
                self.champion.current.close()
                raise
        self.stats = {ab.CHAMPION: ab.VersionStats(), ab.CHALLENGER: ab.VersionStats()}
        self.agreement = ab.Agreement()
        self.guard = ab.CanaryGuard(config.guard_error_rate, config.guard_window)
        self.prediction_log = (
            PredictionLog(
                config.log_predictions,
                max_bytes=config.log_max_bytes,
                backups=config.log_backups,
                sample_rows=config.log_sample_rows,
            )
            if config.log_predictions
            else None
        )
        self.started_at = time.time()
        self.frozen_objects = 0
        self.collector_clock = CollectorClock()
        self._shadow_route: tuple[ServedModel, ServedModel, bool, bool] | None = None
        self.served = 0
        self.refused = 0

    @property
    def logs_predictions(self) -> bool:
        """Answers are logged: the pyfunc path then keeps the rows it scored (a second parse)."""
        return self.prediction_log is not None

    def load(self, model_uri: str, identity: ModelIdentity | None = None) -> ServedModel:
        return load_served_model(
            model_uri,
            self.tracking_uri,
            self.config.max_batch_size,
            self.config.max_wait_ms,
            identity=identity,
            allow_unsafe=self.config.allow_unsafe_models,
        )

    def load_challenger(self, model_uri: str, identity: ModelIdentity | None = None) -> ServedModel:
        model = self.load(model_uri, identity)
        if self.config.mode == ab.SHADOW:
            self.shadow.preload(model.identity)  # the shadow worker loads its own copy, now
        return model

    def shadow_settings(self) -> dict[str, Any]:
        """What the shadow worker needs to load the challenger the way this process does."""
        return {
            "identity": self.challenger.current.identity,
            "tracking_uri": self.tracking_uri,
            "max_batch_size": self.config.max_batch_size,
            "max_wait_ms": self.config.max_wait_ms,
            "allow_unsafe": self.config.allow_unsafe_models,
            "cpus": sorted(parse_cpu_list(self.config.shadow_cpus)) if self.config.shadow_cpus else None,
        }

    # Routes.

    def invocations_endpoint(self) -> Callable[[Request], Awaitable[Response]]:
        """The /invocations route of this server's mode, picked once: a champion-only server's path has
        nothing of a challenger's in it, and a shadow's nothing of a canary's."""
        if self.challenger is None:
            return self.invocations
        return self.invocations_shadowed if self.config.mode == ab.SHADOW else self.invocations_canary

    async def invocations(self, request: Request) -> Response:
        request_id = request_id_of(request)
        model = self.champion.current  # this request finishes with this model, whatever reloads meanwhile
        try:
            body = await read_body(request, self.config.max_body_bytes)
            answer = await score(model, body, request.headers.get("content-type"), self.logs_predictions)
        except RequestError as error:
            return self.refuse(error, request_id)
        self.served += answer.status == 200
        self.log_answer(request_id, model, answer)
        return Response(answer.body, answer.status, media_type=JSON, headers={REQUEST_ID_HEADER: request_id})

    async def invocations_shadowed(self, request: Request) -> Response:
        """Shadow mode: the champion answers (`invocations` plus the shadow's bookkeeping: the busy
        share's marks, whose clock reads time the answer too, the champion's statistics) and a copy goes
        to the challenger (`queue_shadow`). Kept to one coroutine: every call on this path is paid on
        every request."""
        request_id = request_id_of(request)
        model = self.champion.current
        try:
            body = await read_body(request, self.config.max_body_bytes)
        except RequestError as error:
            return self.refuse(error, request_id)
        content_type = request.headers.get("content-type")
        busy = self.champion_busy
        started = busy.started()
        try:
            answer = await score(model, body, content_type, self.logs_predictions)
        except RequestError as error:
            self.stats[ab.CHAMPION].observe(time.monotonic() - started, False)
            return self.refuse(error, request_id)
        finally:
            ended = busy.finished()
        latency = ended - started
        ok = answer.status == 200
        self.stats[ab.CHAMPION].observe(latency, ok)
        if ok:
            self.served += 1
            self.queue_shadow(request_id, model, answer, body, content_type, latency)
        return self.answered(answer, request_id, model, ab.CHAMPION)

    async def invocations_canary(self, request: Request) -> Response:
        request_id = request_id_of(request)
        try:
            body = await read_body(request, self.config.max_body_bytes)
        except RequestError as error:
            return self.refuse(error, request_id)
        content_type = request.headers.get("content-type")
        if not self.guard.tripped:
            sticky = request.headers.get(self.config.sticky_header) if self.config.sticky_header else None
            if ab.canary_bucket(sticky, self.config.canary_percent):
                return await self.canary(request_id, body, content_type)
        return await self.champion_answer(request_id, body, content_type)

    async def champion_answer(
        self, request_id: str, body: bytes, content_type: str | None, extra: dict[str, Any] | None = None
    ) -> Response:
        """The champion answers a canary server's request (`extra`: what the prediction log adds)."""
        model = self.champion.current
        started = time.monotonic()
        try:
            answer = await score(model, body, content_type, self.logs_predictions)
        except RequestError as error:
            self.stats[ab.CHAMPION].observe(time.monotonic() - started, False)
            return self.refuse(error, request_id)
        latency = time.monotonic() - started
        self.stats[ab.CHAMPION].observe(latency, answer.status == 200)
        self.served += answer.status == 200
        if self.prediction_log is not None:
            self.log_answer(request_id, model, answer, self.champion_extra(latency, extra))
        return self.answered(answer, request_id, model, ab.CHAMPION)

    def champion_extra(self, latency: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The champion's fields of a prediction-log line (built only when there is a log)."""
        return {
            "role": ab.CHAMPION,
            "mode": self.config.mode,
            "latency_ms": round(latency * 1e3, 3),
            **(extra or {}),
        }

    async def canary(self, request_id: str, body: bytes, content_type: str | None) -> Response:
        """The challenger answers; if it fails where the champion does not, the champion answers and the
        failure counts against the challenger (and may trip the guard)."""
        model = self.challenger.current
        started = time.perf_counter()
        try:
            answer = await score(model, body, content_type, self.logs_predictions)
            failure = None if answer.status == 200 else answer.body.decode(errors="replace")[:300]
        except RequestError as error:
            answer, failure = None, error.message[:300]
        latency = time.perf_counter() - started
        if failure is None:
            self.stats[ab.CHALLENGER].observe(latency, True)
            self.guard.observe(True)
            self.served += 1
            extra = {"role": ab.CHALLENGER, "mode": ab.CANARY, "latency_ms": round(latency * 1e3, 3)}
            self.log_answer(request_id, model, answer, extra)
            return self.answered(answer, request_id, model, ab.CHALLENGER)
        response = await self.champion_answer(
            request_id,
            body,
            content_type,
            {"canary_error": {"model_version": model.identity.version, "error": failure}},
        )
        if response.status_code == 200:  # the challenger failed on a request the champion answers
            self.stats[ab.CHALLENGER].observe(latency, False)
            if self.guard.observe(False):
                logger.warning(
                    "canary guard tripped for version %s: %s", model.identity.version, self.guard.reason
                )
        return response

    def queue_shadow(
        self,
        request_id: str,
        champion: ServedModel,
        answer: Answer,
        body: bytes,
        content_type: str | None,
        latency: float,
    ) -> None:
        """A copy of an answered request for the challenger, or a count of one shed."""
        challenger = self.challenger.current
        logged = self.prediction_log is not None
        if self.shadow.full():  # shed at once: no work, and a log line only when there is a log
            self.shadow.shed += 1
            if logged:
                shed = {"model_version": challenger.identity.version, "shed": True}
                self.log_answer(
                    request_id, champion, answer, {**self.champion_extra(latency), "shadow": shed}
                )
            return
        _, _, reuse, counted = self.shadow_route(champion, challenger)
        output = answer.output
        if counted and output is not None and answer.inputs.nbytes + output.nbytes <= OFFLOAD_BYTES:
            self.shadow.offer_counted(challenger.identity, answer.inputs, output)
            return
        reuse = reuse and output is not None
        message = {
            "identity": challenger.identity,
            # Same signature: the champion's validated array is the challenger's input too.
            "array": pack(answer.inputs) if reuse else None,
            "body": None if reuse else body,
            "content_type": content_type,
            "ours_output": None if champion.records_output else pack(answer.output),
            "ours_predictions": answer.predictions,
            "keep": logged,
        }

        def finish(result: dict[str, Any]) -> None:
            failure = result["error"]
            self.stats[ab.CHALLENGER].observe(result["latency_s"], failure is None)
            if failure is None:
                self.agreement.add(result["rows"], result["agreed"])
            if not logged:
                return
            shadow: dict[str, Any] = {
                "model_version": result["version"],
                "latency_ms": round(result["latency_s"] * 1e3, 3),
            }
            theirs = None
            if failure is None:
                theirs = Answer(b"", 200, None, result["output"], result["predictions"])
            else:
                shadow["error"] = failure
            line = {**self.champion_extra(latency), "shadow": shadow}
            self.log_answer(request_id, champion, answer, line, (challenger, theirs))

        def shed() -> None:
            if logged:
                shadow = {"model_version": challenger.identity.version, "shed": True}
                self.log_answer(
                    request_id, champion, answer, {**self.champion_extra(latency), "shadow": shadow}
                )

        size = len(body) if answer.inputs is None else max(len(body), answer.inputs.nbytes)
        self.shadow.offer(ShadowJob(message, size, finish, shed))

    def shadow_counts(self, result: dict[str, Any]) -> None:
        """A burst of counted shadow copies came back (ShadowWorker.offer_counted): its failures count
        on /health as a copy's do (no log line: a failing challenger would write one per burst)."""
        self.stats[ab.CHALLENGER].observe_many(result["latencies_s"], len(result["errors"]))
        self.agreement.add(result["rows"], result["agreed"])

    def shadow_route(
        self, champion: ServedModel, challenger: ServedModel
    ) -> tuple[ServedModel, ServedModel, bool, bool]:
        """(champion, challenger, same input, counted) for this pair of models, remembered (asked once
        per request): "same input" when the champion's validated array feeds the challenger as it is
        (`same_input`); "counted" when, on top of that, only the copies' counts matter (no prediction
        log, an output that is an array), so small ones go as counted copies (offer_counted)."""
        route = self._shadow_route
        if route is None or route[0] is not champion or route[1] is not challenger:
            reuse = same_input(champion, challenger)
            counted = reuse and self.prediction_log is None and not champion.records_output
            route = self._shadow_route = (champion, challenger, reuse, counted)
        return route

    @staticmethod
    def answered(answer: Answer, request_id: str, model: ServedModel, role: str) -> Response:
        """The answer, naming its request, and the version and role that answered (the raw header
        pairs: Starlette's own would encode and check each header at every request)."""
        response = Response(answer.body, answer.status, media_type=JSON)
        response.raw_headers += (
            (_REQUEST_ID_KEY, request_id.encode("latin-1")),
            *_answered_by(str(model.identity.version), role),
        )
        return response

    async def ping(self, request: Request) -> Response:
        return Response("\n", media_type=JSON)  # what `mlflow models serve` answers

    async def version(self, request: Request) -> Response:
        import mlflow

        return Response(mlflow.__version__, media_type=JSON)  # what `mlflow models serve` answers

    async def health(self, request: Request) -> Response:
        return Response(orjson.dumps(self.health_report()), media_type=JSON)

    # Helpers of the routes.

    def refuse(self, error: RequestError, request_id: str) -> Response:
        self.refused += 1
        logger.warning("refused request: %s %s (request %s)", error.status, error.message[:200], request_id)
        return error_response(error.status, error.error_code, error.message, {REQUEST_ID_HEADER: request_id})

    def log_answer(
        self,
        request_id: str,
        model: ServedModel,
        answer: Answer,
        extra: dict[str, Any] | None = None,
        shadow: tuple[ServedModel, Answer | None] | None = None,
    ) -> None:
        """One prediction-log line for an answered request (sampled rows only for a large one); `shadow`
        is the challenger and its answer to the same request, logged under extra["shadow"]."""
        log = self.prediction_log
        if log is None or answer.inputs is None or answer.predictions is None:
            return
        extra = dict(extra or {})
        if answer.params:
            extra["params"] = answer.params
        inputs, predictions = answer.inputs, answer.predictions
        theirs = shadow[1].predictions if shadow and shadow[1] is not None else None
        rows = log.sample(len(inputs))
        if rows is not None:
            inputs, predictions = inputs[rows], sampled_predictions(model, answer, rows)
            extra.update(rows_total=len(answer.inputs), sampled_rows=rows)
            if theirs is not None:
                partner, partner_answer = shadow
                theirs = sampled_predictions(partner, partner_answer, rows)
        if theirs is not None:
            extra["shadow"] = {**extra["shadow"], "predictions": orjson.Fragment(theirs)}
        names = answer.columns if model.validator is None else list(model.validator.spec.names) or None
        log.record(request_id, model.identity.as_dict(), names, inputs, predictions, extra)

    def health_report(self) -> dict[str, Any]:
        model = self.champion.current
        return {
            "status": "ok",
            "uptime_s": round(time.time() - self.started_at, 1),
            **describe_model(model),
            "reloads": self.champion.holder.swaps,
            "reload": self.champion.follower.status() if self.champion.follower else None,
            "served": self.served,
            "refused": self.refused,
            "batched_calls": model.batcher.batches if model.batcher else None,
            "batched_rows": model.batcher.rows if model.batcher else None,
            "largest_model_call": model.largest_model_call,
            "prediction_log": (
                {"path": self.prediction_log.path, "rotations": self.prediction_log.rotations}
                if self.prediction_log
                else None
            ),
            "gc": {
                "frozen_at_start": self.frozen_objects,
                "full_passes": gc.get_stats()[2]["collections"],
                **self.collector_clock.report(),
            },
            **(self.challenger_report() if self.challenger is not None else {}),
        }

    def challenger_report(self) -> dict[str, Any]:
        challenger = self.challenger.current
        report: dict[str, Any] = {
            "mode": self.config.mode,
            "challenger": describe_model(challenger),
            "challenger_reload": self.challenger.follower.status() if self.challenger.follower else None,
            "versions": {
                ab.CHAMPION: self.stats[ab.CHAMPION].report(self.champion.current.identity.version),
                ab.CHALLENGER: self.stats[ab.CHALLENGER].report(challenger.identity.version),
            },
        }
        if self.config.mode == ab.SHADOW:
            report["agreement"] = self.agreement.report()
            report["shadow"] = self.shadow.report()
        else:
            report["canary"] = {
                "percent": self.config.canary_percent,
                "sticky_header": self.config.sticky_header,
            }
            report["guard"] = self.guard.report()
        return report

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette):
        self.champion.start()
        if self.challenger is not None:
            self.challenger.start()
            if self.config.mode == ab.SHADOW:
                await self.shadow.start()
        if self.prediction_log is not None:
            self.prediction_log.start()
        self.frozen_objects = freeze_startup_heap()  # the models are loaded: full GC passes skip them
        self.collector_clock.start()
        model = self.champion.current
        logger.info("serving %s (%s) on pid %d", model.identity.resolved_uri, model.flavor, os.getpid())
        if self.challenger is not None:
            logger.info(
                "challenger %s in %s mode", self.challenger.current.identity.resolved_uri, self.config.mode
            )
        try:
            yield
        finally:
            self.collector_clock.stop()  # tests start several servers in one process
            await self.shadow.stop()
            await self.champion.stop()
            if self.challenger is not None:
                await self.challenger.stop()
            if self.prediction_log is not None:
                await self.prediction_log.close()


def sampled_predictions(model: ServedModel, answer: Answer, rows: np.ndarray) -> bytes:
    """The predictions' JSON of the sampled rows: from the raw output on the fast path, else from the
    predictions MLflow answered."""
    if answer.output is not None:
        return model.output_json(answer.output[rows])
    every = orjson.loads(answer.predictions)
    return orjson.dumps([every[row] for row in rows.tolist()])


def same_input(champion: ServedModel, challenger: ServedModel) -> bool:
    """Both models take the same validated array (same signature, dtype and memory order)."""
    ours, theirs = champion.validator, challenger.validator
    return (
        ours is not None
        and theirs is not None
        and type(ours) is type(theirs)
        and ours.spec == theirs.spec
        and ours.dtype == theirs.dtype
        and ours.order == theirs.order
    )


def describe_model(model: ServedModel) -> dict[str, Any]:
    """Which model this is: our identity, on /health (MLflow's /version holds only MLflow's version)."""
    return {**model.identity.as_dict(), "flavor": model.flavor, "loaded_at": model.loaded_at}


def routes(service: ScoringService) -> list[Route]:
    return [
        Route("/invocations", service.invocations_endpoint(), methods=["POST"]),
        Route("/ping", service.ping, methods=["GET"]),
        Route("/health", service.health, methods=["GET"]),
        Route("/version", service.version, methods=["GET"]),
    ]


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
    service = ScoringService(config, resolve_tracking_uri(config.tracking_uri))
    app = Starlette(routes=routes(service), lifespan=service.lifespan)
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
