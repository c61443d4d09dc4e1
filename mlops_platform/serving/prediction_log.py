"""`--log-predictions PATH`: served inputs and outputs appended as JSON lines.

One line per request: time, model name/version, the validated input (column names and rows, in the
signature's order: what the model saw, not the raw payload) and the predictions. Lines are buffered in
memory and written by one `os.write` per flush on an O_APPEND descriptor, so several worker processes
can share the file without interleaving inside a line, and a request never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

import numpy as np
import orjson

logger = logging.getLogger(__name__)


class PredictionLog:
    """Buffers JSON lines and appends them to `path` every `flush_interval` seconds and on close."""

    def __init__(self, path: str, flush_interval: float = 0.5, max_buffered: int = 2000):
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lines: list[bytes] = []
        self._flush_interval = flush_interval
        self._max_buffered = max_buffered
        self._task: asyncio.Task | None = None

    def record(
        self, identity: dict[str, Any], columns: list[str] | None, inputs: np.ndarray, output: bytes
    ) -> None:
        """Queue one line; `output` is the predictions' JSON as sent to the client."""
        line = (
            b'{"time":'
            + orjson.dumps(time.time())
            + b',"model_name":'
            + orjson.dumps(identity.get("model_name"))
            + b',"model_version":'
            + orjson.dumps(identity.get("model_version"))
            + b',"columns":'
            + orjson.dumps(columns)
            + b',"inputs":'
            + orjson.dumps(np.ascontiguousarray(inputs), option=orjson.OPT_SERIALIZE_NUMPY)
            + b',"predictions":'
            + output
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
        except OSError as error:  # a full disk must not take serving down
            logger.warning("could not write the prediction log %s: %s", self.path, error)

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
