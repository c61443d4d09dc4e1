"""`mlops sync` and tracker start-up: deliver journals their processes left behind.

A journal is orphaned when no live process holds its lock (the owner ended or was killed). Replay
sends what is past its acknowledged offset with the original timestamps; see `delivery` for why a
second replay stores nothing twice. A fully delivered journal is deleted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlops_platform.tracking.delivery import Delivery, DeliveryCounts, TransientDeliveryError
from mlops_platform.tracking.journal import Journal, JournalLocked, iter_journals


@dataclass(frozen=True)
class SyncResult:
    run_id: str
    state: str  # "delivered" | "in use" | "pending"
    counts: DeliveryCounts
    path: Path
    error: str | None = None

    @property
    def rejected_path(self) -> Path:
        return Journal(self.path).rejected_path


def sync_journals(
    home: Path | None = None,
    tracking_uri: str | None = None,
    attempts: int = 3,
    backoff: float = 1.0,
    exclude: Iterable[str] = (),
) -> list[SyncResult]:
    """Replay every orphaned journal under `home`; journals of live processes are skipped.

    Args:
        tracking_uri: deliver there instead of the URI each journal recorded.
        attempts: tries per journal while the server is unreachable, `backoff` seconds apart (doubling).
    """
    from mlflow import MlflowClient

    skip = set(exclude)
    results = []
    for journal in iter_journals(home):
        if journal.directory.name in skip:
            continue
        try:
            journal.lock()
        except JournalLocked:
            results.append(SyncResult(journal.directory.name, "in use", DeliveryCounts(), journal.directory))
            continue
        except FileNotFoundError:  # delivered and removed by another sync meanwhile
            continue
        try:
            meta = journal.meta()
            delivery = Delivery(journal, MlflowClient(tracking_uri or meta.tracking_uri), meta.run_id)
            error = None
            for attempt in range(attempts):
                try:
                    delivery.pump()
                    error = None
                    break
                except TransientDeliveryError as failure:
                    error = str(failure)
                    if attempt + 1 < attempts:
                        time.sleep(backoff * 2**attempt)
            if delivery.pending():
                results.append(SyncResult(meta.run_id, "pending", delivery.counts, journal.directory, error))
            else:
                journal.remove()
                results.append(SyncResult(meta.run_id, "delivered", delivery.counts, journal.directory))
        finally:
            journal.close()
    return results
