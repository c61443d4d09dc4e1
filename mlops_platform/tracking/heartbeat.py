"""The heartbeat: a run tag holding the time of the last sign of life of the process that owns the run.

It goes straight to the server from its own thread (not through the journal): a heartbeat replayed
later would claim the process lived when it did not. A failed beat is simply skipped. The time is the
server's (server_clock.py), and the interval is recorded on the run (HEARTBEAT_INTERVAL_TAG), so the
reaper judges a beat neither by this host's clock nor by a fixed idea of how often it comes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from mlops_platform.tracking.tags import HEARTBEAT_TAG

_log = logging.getLogger(__name__)


def heartbeat_value(now: float | None = None) -> str:
    return str(int(time.time() if now is None else now))


class Heartbeat:
    def __init__(self, client, run_id: str, interval: float, clock: Callable[[], float] = time.time):
        self.client = client
        self.run_id = run_id
        self.interval = interval
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"mlops-heartbeat-{run_id[:8]}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        # A beat stuck on an unreachable server is left behind (daemon thread).
        self._thread.join(1.0)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.client.set_tag(self.run_id, HEARTBEAT_TAG, heartbeat_value(self.clock()))
            except Exception as error:  # the server is away: the next beat tries again
                _log.debug("heartbeat of run %s failed: %s", self.run_id, error)
