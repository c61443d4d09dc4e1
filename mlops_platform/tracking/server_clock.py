"""Time on the tracking server's clock, so heartbeats and the reaper agree whatever the hosts' clocks say.

A heartbeat is a time written by the training host and judged by whoever runs `mlops runs reap`; with
their own clocks, a trainer whose clock is an hour behind (or a reaper an hour ahead) would look dead
while it beats. Both therefore speak the server's time: local time plus an offset read from the `Date`
header every HTTP answer of the server carries (`GET /health`, no authentication needed, no MLflow
call counted). The header has one-second resolution, which is plenty for staleness measured in
minutes. A store that is not an HTTP server (a file or database URI on this machine) has no clock of
its own: the local one is used.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable

_log = logging.getLogger(__name__)
# How long a measured offset is trusted before it is read again (clocks drift, NTP steps them).
REFRESH_S = 600.0
RETRY_S = 60.0  # after a failed reading: the last known offset meanwhile
TIMEOUT_S = 5.0


def measure_offset(tracking_uri: str | None, local: Callable[[], float] = time.time) -> float | None:
    """Seconds to add to `local()` to get the server's time: 0 when the store has no clock of its own,
    None when the server could not be asked."""
    if not tracking_uri or not tracking_uri.startswith(("http://", "https://")):
        return 0.0
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        before = local()
        response = http_request(
            get_default_host_creds(tracking_uri), "/health", "GET", max_retries=0, timeout=TIMEOUT_S
        )
        after = local()
        date = response.headers.get("Date")
        if date is None:
            return None
        # The header truncates to the second: the server's time was within [date, date + 1).
        server = email.utils.parsedate_to_datetime(date).timestamp() + 0.5
    except Exception as error:  # unreachable now: the local clock until the next try
        _log.debug("could not read the clock of %s: %s", tracking_uri, error)
        return None
    return server - (before + after) / 2


class ServerClock:
    """`now()` on the tracking server's clock (see the module docstring); thread-safe."""

    def __init__(
        self, tracking_uri: str | None, local: Callable[[], float] = time.time, refresh_s: float = REFRESH_S
    ):
        self.tracking_uri = tracking_uri
        self.local = local
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._offset = 0.0
        self._next_reading: float | None = None

    def now(self) -> float:
        with self._lock:
            if self._next_reading is None or time.monotonic() >= self._next_reading:
                measured = measure_offset(self.tracking_uri, self.local)
                if measured is not None:
                    self._offset = measured
                self._next_reading = time.monotonic() + (self.refresh_s if measured is not None else RETRY_S)
            offset = self._offset
        return self.local() + offset
