"""The background thread that delivers a live journal, retrying with backoff while the server is down."""

from __future__ import annotations

import logging
import threading
import time

from mlops_platform.tracking.delivery import Delivery, TransientDeliveryError
from mlops_platform.tracking.journal import Journal

_log = logging.getLogger(__name__)


class Sender:
    """Polls the journal every `interval` seconds and sends whatever accumulated, coalesced.

    Training threads only append to the journal; they never wait on this thread (`flush` aside).
    """

    def __init__(
        self,
        journal: Journal,
        client,
        run_id: str,
        interval: float = 1.0,
        max_backoff: float = 10.0,
        fsync_interval: float = 1.0,
        compact_bytes: int = 64 * 1024 * 1024,
    ):
        self.journal = journal
        self.interval = interval
        self.max_backoff = max_backoff
        self.fsync_interval = fsync_interval
        self.compact_bytes = compact_bytes
        self.last_error: str | None = None
        self._condition = threading.Condition()
        self._delivery = Delivery(journal, client, run_id, on_ack=self._acknowledged)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"mlops-sender-{run_id[:8]}", daemon=True)
        self._last_fsync = 0.0

    @property
    def counts(self):
        return self._delivery.counts

    @property
    def acked(self) -> int:
        return self._delivery.acked

    def start(self) -> None:
        self._thread.start()

    def pending_bytes(self) -> int:
        return max(0, self.journal.written - self._delivery.acked)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until everything appended so far is acknowledged; False if `timeout` passed first."""
        target = self.journal.position()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        with self._condition:
            # Logical offsets (compacted bytes included): compaction runs under this condition.
            while self.journal.compacted + self._delivery.acked < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if not self._thread.is_alive():
                    return False
                self._condition.wait(0.5 if remaining is None else min(remaining, 0.5))
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread. A thread stuck in a request is left behind (it is a daemon)."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)

    # --- the thread --------------------------------------------------------------------------------
    def _acknowledged(self, offset: int) -> None:
        with self._condition:
            self._condition.notify_all()

    def _loop(self) -> None:
        backoff = 0.0
        while not self._stopping.is_set():
            # Cleared before looking, so a flush that wakes us during a pump gets one more look.
            self._wake.clear()
            try:
                self._sync_to_disk()
                self._delivery.pump()
                self._compact()
                if self.last_error is not None:
                    _log.warning("tracking server reachable again; delivery of run journal resumed")
                backoff, self.last_error = 0.0, None
            except TransientDeliveryError as error:
                if self.last_error is None:
                    _log.warning("tracking server unreachable, retrying with backoff: %s", str(error)[:200])
                self.last_error = str(error)
                backoff = min(max(backoff * 2, 0.5), self.max_backoff)
            except Exception as error:  # a bug or a corrupt journal: keep the journal, stop sending
                self.last_error = f"{type(error).__name__}: {error}"
                _log.exception("tracking sender stopped; the journal stays for `mlops sync`")
                with self._condition:
                    self._condition.notify_all()
                return
            self._wake.wait(backoff or self.interval)

    def _compact(self) -> None:
        """A long run's journal does not grow for ever: its delivered front is dropped now and then."""
        if self._delivery.acked >= self.compact_bytes:
            with self._condition:
                self._delivery.compact()

    def _sync_to_disk(self) -> None:
        now = time.monotonic()
        if now - self._last_fsync >= self.fsync_interval and self.pending_bytes():
            self.journal.sync_to_disk()
            self._last_fsync = now
