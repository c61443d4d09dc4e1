"""`--log-predictions PATH`: served inputs and outputs appended as JSON lines (the skew report and
`mlops serve report` read them).

Format: one JSON object per line, one line per answered request (refused requests are not logged):

    time           float, seconds since the epoch, when the answer was sent
    request_id     str, unique per request (also the `X-Request-Id` response header)
    model_name     str | null, the registered model that answered
    model_version  str | null, its version
    columns        [str] | null, input column names in the signature's order (null for a tensor)
    inputs         [[number]], the validated rows the model saw (not the raw payload), signature order
    predictions    [...], the predictions as sent to the client (row for row with `inputs`)
    params         object, only when the request carried inference params
    rows_total     int, only when the request was sampled: its row count; `inputs`/`predictions` then
                   hold `sampled_rows` (their row indices) only
    role           "champion" | "challenger", only with --challenger: which model answered
    mode           "shadow" | "canary", only with --challenger
    shadow         object, only in shadow mode: the challenger's copy of this request,
                   {"model_version", "predictions"} or {"model_version", "error"} or
                   {"model_version", "shed": true} when it was dropped because the challenger lagged

Lines are buffered in memory and written by one `os.write` per flush on an O_APPEND descriptor, so
several worker processes can share the file without interleaving inside a line, and a request never
waits on the disk. The file is created with mode 0600 (inputs may be personal data). When it reaches
`max_bytes` it is renamed to PATH.1 (PATH.1 to PATH.2, ... up to `backups`) and a new PATH is begun.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from typing import Any

import numpy as np
import orjson

logger = logging.getLogger(__name__)

FILE_MODE = 0o600


class PredictionLog:
    """Buffers JSON lines and appends them to `path` every `flush_interval` seconds and on close."""

    def __init__(
        self,
        path: str,
        max_bytes: int = 100 * 1024 * 1024,
        backups: int = 3,
        sample_rows: int = 0,
        flush_interval: float = 0.5,
        max_buffered: int = 2000,
        seed: int | None = None,
    ):
        self.path = os.path.abspath(path)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.max_bytes = max_bytes
        self.backups = backups
        self.sample_rows = sample_rows
        self._fd = self._open()
        self._lines: list[bytes] = []
        self._flush_interval = flush_interval
        self._max_buffered = max_buffered
        self._rng = np.random.default_rng(seed)
        self._task: asyncio.Task | None = None
        self.rotations = 0

    def sample(self, rows: int) -> np.ndarray | None:
        """Sorted row indices to log for a request of `rows` rows, or None to log them all."""
        if not self.sample_rows or rows <= self.sample_rows:
            return None
        return np.sort(self._rng.choice(rows, self.sample_rows, replace=False))

    def record(
        self,
        request_id: str,
        identity: dict[str, Any],
        columns: list[str] | None,
        inputs: np.ndarray,
        predictions: bytes,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Queue one line; `predictions` is the predictions' JSON, row for row with `inputs`."""
        line = (
            b'{"time":'
            + orjson.dumps(time.time())
            + b',"request_id":'
            + orjson.dumps(request_id)
            + b',"model_name":'
            + orjson.dumps(identity.get("model_name"))
            + b',"model_version":'
            + orjson.dumps(identity.get("model_version"))
            + b',"columns":'
            + orjson.dumps(columns)
            + b',"inputs":'
            # Rows of mixed values (the pyfunc path's tables: strings, booleans, None) as lists.
            + orjson.dumps(
                inputs.tolist() if inputs.dtype == object else np.ascontiguousarray(inputs),
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
            + b',"predictions":'
            + predictions
            + (b"," + orjson.dumps(extra, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1] if extra else b"")
            + b"}\n"
        )
        self._lines.append(line)
        if len(self._lines) >= self._max_buffered:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        data, self._lines = b"".join(self._lines), []
        try:
            os.write(self._fd, data)
            self._rotate_if_due()
        except OSError as error:  # a full disk must not take serving down
            logger.warning("could not write the prediction log %s: %s", self.path, error)

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        os.fchmod(fd, FILE_MODE)  # an existing file keeps its mode through open(); not this one
        return fd

    def _rotate_if_due(self) -> None:
        if os.fstat(self._fd).st_size < self.max_bytes:
            if not self._still_current():  # another worker process rotated it: follow
                self._reopen()
            return
        # Worker processes sharing the file rotate one at a time, and only the file they all write.
        with open(self.path + ".lock", "a") as lock:
            os.fchmod(lock.fileno(), FILE_MODE)
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._still_current():
                for index in range(self.backups - 1, 0, -1):
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(f"{self.path}.{index}", f"{self.path}.{index + 1}")
                if self.backups > 0:
                    os.replace(self.path, f"{self.path}.1")
                else:
                    os.unlink(self.path)
                self.rotations += 1
            self._reopen()

    def _still_current(self) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
        except FileNotFoundError:
            return False

    def _reopen(self) -> None:
        old, self._fd = self._fd, self._open()
        os.close(old)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            self.flush()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.flush()
        os.close(self._fd)
