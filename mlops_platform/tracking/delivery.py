"""Delivering a journal to the tracking server: batches of whole lines, acknowledged after each request.

Used by the background sender of a live run and by `mlops sync` for journals left behind.

Exactly once: a record's identity is fixed when it is accepted (key, step, value and the original
timestamp, all stored in the journal). The SQL tracking stores key a metric row by exactly that
identity and `log_batch` skips rows that already exist, so re-sending a batch whose acknowledgement
was lost (a crash between the server's commit and our `acked` write) stores nothing twice. Params are
re-sent with the same value (allowed) and tags overwrite themselves. Records past the acknowledged
offset were never confirmed and are always sent.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mlops_platform.tracking.journal import SPOOL_DIR, Journal, Record

_log = logging.getLogger(__name__)

# MLflow's log_batch limits (mlflow.utils.validation).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_IN_FLIGHT = 2


class TransientDeliveryError(Exception):
    """The server could not be reached or failed; the same records are tried again later."""


class DeliveryRejected(UserWarning):
    """The server refused a record for good (a param that changed value); see `Journal.rejected_path`."""


@dataclass
class DeliveryCounts:
    metrics: int = 0
    params: int = 0
    tags: int = 0
    artifacts: int = 0
    rejected: int = 0
    ended: str | None = None
    errors: list[str] = field(default_factory=list)


def is_permanent(error: BaseException) -> bool:
    """True for a request the server will refuse however often it is sent (a 4xx other than 429)."""
    from mlflow.exceptions import MlflowException

    if not isinstance(error, MlflowException):
        return False
    status = error.get_http_status_code()
    return 400 <= status < 500 and status != 429


@dataclass
class _Batch:
    metrics: list = field(default_factory=list)
    params: list = field(default_factory=list)
    tags: list = field(default_factory=list)
    end: int = 0

    def fits(self, metrics: int, params: int, tags: int) -> bool:
        return (
            len(self.metrics) + metrics <= MAX_METRICS_PER_BATCH
            and len(self.params) + params <= MAX_PARAMS_TAGS_PER_BATCH
            and len(self.tags) + tags <= MAX_PARAMS_TAGS_PER_BATCH
            and len(self.metrics) + len(self.params) + len(self.tags) + metrics + params + tags
            <= MAX_ENTITIES_PER_BATCH
        )

    def __bool__(self) -> bool:
        return bool(self.metrics or self.params or self.tags)


class _InFlight:
    """One `log_batch` request on its own daemon thread (a request stuck on a dead server must not
    keep the process from exiting, as an executor's threads would)."""

    def __init__(self, post: Callable[[_Batch], None], batch: _Batch):
        self.batch = batch
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(post,), name="mlops-post", daemon=True)
        self._thread.start()

    def _run(self, post: Callable[[_Batch], None]) -> None:
        try:
            post(self.batch)
        except BaseException as error:
            self._error = error

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


class BatchPoster:
    """`log_batch` for a client, cheap on the client side.

    Against a REST server (ours) the request body is built straight from the journal's plain values:
    MLflow's own client turns each metric into an entity, a protobuf and JSON, about 14 ms of CPU per
    1,000 metrics here against 2 ms, and that CPU is taken from the training process. Other stores go
    through `client.log_batch`.
    """

    def __init__(self, client):
        from mlflow.protos.service_pb2 import LogBatch
        from mlflow.store.tracking.rest_store import RestStore

        self.client = client
        store = client._tracking_client.store
        self._rest = store if isinstance(store, RestStore) else None
        self.is_rest = self._rest is not None
        if self._rest is not None:
            self._endpoint, self._method = RestStore._METHOD_TO_INFO[LogBatch]

    def log_batch(self, run_id: str, metrics: list[dict], params: list[dict], tags: list[dict]) -> None:
        if self._rest is None:
            from mlflow.entities import Metric, Param, RunTag

            self.client.log_batch(
                run_id,
                metrics=[Metric(m["key"], m["value"], m["timestamp"], m["step"]) for m in metrics],
                params=[Param(p["key"], p["value"]) for p in params],
                tags=[RunTag(t["key"], t["value"]) for t in tags],
            )
            return
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        body = {
            "run_id": run_id,
            "metrics": [_json_metric(m) for m in metrics],
            "params": params,
            "tags": tags,
        }
        response = http_request(self._rest.get_host_creds(), self._endpoint, self._method, json=body)
        verify_rest_response(response, self._endpoint)


def _json_metric(metric: dict) -> dict:
    value = metric["value"]
    if math.isfinite(value):
        return metric
    # Protobuf's JSON form of non-finite doubles (plain JSON has no NaN).
    text = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return {**metric, "value": text}


class Delivery:
    """Sends what a journal holds past its acknowledged offset."""

    def __init__(
        self,
        journal: Journal,
        client,
        run_id: str,
        on_ack: Callable[[int], None] | None = None,
    ):
        self.journal = journal
        self.client = client
        self.poster = BatchPoster(client)
        self.run_id = run_id
        self.counts = DeliveryCounts()
        self._on_ack = on_ack
        self._acked = journal.acked()
        self._in_flight: deque[_InFlight] = deque()

    @property
    def acked(self) -> int:
        return self._acked

    def pending(self) -> bool:
        return self._acked < self.journal.written

    def pump(self) -> None:
        """Deliver every complete record now in the journal.

        Raises:
            TransientDeliveryError: the server is unreachable or failing; what was delivered before the
                failure stays acknowledged.
        """
        while True:
            records = self.journal.read(self._acked)
            if not records:
                return
            self._deliver(records)

    # --- internals ---------------------------------------------------------------------------------
    def _deliver(self, records: list[Record]) -> None:
        batch = _Batch()
        for record in records:
            data = record.data
            if "e" in data or "a" in data:
                self._send(batch)
                self._settle(keep=0)
                if "e" in data:
                    self._end(data["e"], data["t"], record.end)
                else:
                    self._artifact(data["a"], data["d"], record.end)
                batch = _Batch(end=record.end)
                continue
            metrics = data.get("m", {})
            params = data.get("p", {})
            tags = data.get("g", {})
            if not batch.fits(len(metrics), len(params), len(tags)):
                self._send(batch)
                batch = _Batch(end=batch.end)
            if metrics:
                timestamp, step = data["t"], data["s"]
                batch.metrics.extend(
                    {"key": k, "value": v, "timestamp": timestamp, "step": step} for k, v in metrics.items()
                )
            batch.params.extend({"key": k, "value": v} for k, v in params.items())
            batch.tags.extend({"key": k, "value": v} for k, v in tags.items())
            batch.end = record.end
        self._send(batch)
        self._settle(keep=0)

    def _send(self, batch: _Batch) -> None:
        if batch and self.poster.is_rest and not batch.params and not batch.tags:
            # Metrics-only batches go out two at a time: the server parses one while it writes the
            # other. Their order does not matter (every row keeps its own step and timestamp);
            # params and tags, where the last write wins, go alone and in order.
            self._in_flight.append(_InFlight(self._post, batch))
            self._settle(keep=MAX_IN_FLIGHT - 1)
            return
        self._settle(keep=0)
        if batch:
            self._post(batch)
            self._count(batch)
        if batch.end > self._acked:
            self._acknowledge(batch.end)

    def _settle(self, keep: int) -> None:
        """Wait for the oldest requests in flight until `keep` remain; acknowledge them in order."""
        while len(self._in_flight) > keep:
            oldest = self._in_flight[0]
            try:
                oldest.result()
            except BaseException:
                # Nothing past a failed request is acknowledged: a later one that got through is sent
                # again next time and stored once (see the module docstring).
                for request in self._in_flight:
                    request.wait()
                self._in_flight.clear()
                raise
            self._in_flight.popleft()
            self._count(oldest.batch)
            if oldest.batch.end > self._acked:
                self._acknowledge(oldest.batch.end)

    def _post(self, batch: _Batch) -> None:
        try:
            self.poster.log_batch(self.run_id, batch.metrics, batch.params, batch.tags)
        except Exception as error:
            if not is_permanent(error):
                raise TransientDeliveryError(str(error)) from error
            self._send_one_by_one(batch)

    def _count(self, batch: _Batch) -> None:
        self.counts.metrics += len(batch.metrics)
        self.counts.params += len(batch.params)
        self.counts.tags += len(batch.tags)

    def _send_one_by_one(self, batch: _Batch) -> None:
        """A batch the server refused: send its parts alone and keep only the refused ones aside."""
        groups = [("metrics", [batch.metrics])] if batch.metrics else []
        groups += [("params", [[p] for p in batch.params]), ("tags", [[t] for t in batch.tags])]
        for kind, parts in groups:
            for part in parts:
                try:
                    self.poster.log_batch(
                        self.run_id, **{"metrics": [], "params": [], "tags": [], kind: part}
                    )
                except Exception as error:
                    if not is_permanent(error):
                        raise TransientDeliveryError(str(error)) from error
                    if kind == "metrics" and len(part) > 1:
                        for metric in part:
                            self._send_single_metric(metric)
                    else:
                        self._reject(kind, part, error)

    def _send_single_metric(self, metric: dict) -> None:
        try:
            self.poster.log_batch(self.run_id, [metric], [], [])
        except Exception as error:
            if not is_permanent(error):
                raise TransientDeliveryError(str(error)) from error
            self._reject("metrics", [metric], error)

    def _reject(
        self, kind: str, entities: list[dict], error: BaseException, by: str = "the tracking server"
    ) -> None:
        entries = [{"kind": kind, **entity, "error": str(error)[:500]} for entity in entities]
        self.journal.rejected_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.journal.rejected_path, "a") as file:
            file.writelines(json.dumps(entry) + "\n" for entry in entries)
        self.counts.rejected += len(entries)
        self.counts.errors.append(str(error)[:500])
        warnings.warn(
            f"{by} refused {kind} {[e['key'] for e in entities]} of run {self.run_id}: "
            f"{str(error)[:300]} (kept in {self.journal.rejected_path})",
            DeliveryRejected,
            stacklevel=2,
        )

    def _artifact(self, relative: str, artifact_path: str | None, offset: int) -> None:
        problem = spool_problem(self.journal.directory, relative)
        if problem:
            # A forged or damaged record: upload nothing, delete nothing, keep it aside.
            self._reject(
                "artifacts", [{"key": relative, "value": artifact_path}], ValueError(problem), by="delivery"
            )
            self._acknowledge(offset)
            return
        local = self.journal.directory / relative
        # Missing: uploaded and removed before a crash lost the acknowledgement; nothing left to do.
        if local.exists():
            try:
                if local.is_dir():
                    self.client.log_artifacts(self.run_id, str(local), artifact_path)
                else:
                    self.client.log_artifact(self.run_id, str(local), artifact_path)
            except Exception as error:
                if not is_permanent(error):
                    raise TransientDeliveryError(str(error)) from error
                self.counts.errors.append(str(error)[:500])
                _log.warning("the server refused artifact %s of run %s: %s", relative, self.run_id, error)
            self.counts.artifacts += 1
        self._acknowledge(offset)
        shutil.rmtree(local.parent, ignore_errors=True)

    def _end(self, status: str, end_time: int, offset: int) -> None:
        try:
            self.client.set_terminated(self.run_id, status=status, end_time=end_time)
        except Exception as error:
            if not is_permanent(error):
                raise TransientDeliveryError(str(error)) from error
            self.counts.errors.append(str(error)[:500])
            _log.warning("could not end run %s as %s: %s", self.run_id, status, error)
        self.counts.ended = status
        self._acknowledge(offset)

    def _acknowledge(self, offset: int) -> None:
        self.journal.acknowledge(offset)
        self._acked = offset
        if self._on_ack is not None:
            self._on_ack(offset)

    def compact(self) -> None:
        """Drop the delivered front of a live journal (see `Journal.compact`)."""
        self._acked -= self.journal.compact(self._acked)


def spool_problem(journal_dir: Path, relative: str) -> str | None:
    """Why `relative` is not an artifact this journal spooled (None when it is).

    What `Journal.append_artifact` writes is `spool/<entry>/<name>`: one file or a folder of plain
    files, inside this journal's own spool. Anything else (an absolute path, `..`, a link out) would
    make `mlops sync` upload, then delete, files the journal does not own.
    """
    parts = PurePosixPath(relative).parts
    if (
        len(parts) != 3
        or parts[0] != SPOOL_DIR
        or any(part in ("", ".", "..") or "\\" in part for part in parts)
        or PurePosixPath(relative).is_absolute()
    ):
        return f"artifact record {relative!r} does not name a file in the journal's spool"
    entry = (journal_dir / SPOOL_DIR / parts[1]).resolve()
    local = journal_dir / relative
    if (
        local.is_symlink()
        or local.resolve().parent != entry
        or entry.parent != (journal_dir / SPOOL_DIR).resolve()
    ):
        return f"artifact record {relative!r} leads out of the journal's spool"
    if local.is_dir():
        for path in local.rglob("*"):
            if path.is_symlink():
                return f"artifact folder {relative!r} holds a link ({path.name}); spooled copies never do"
    return None


def now_ms() -> int:
    return int(time.time() * 1000)
