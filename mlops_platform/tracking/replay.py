"""`mlops sync` and tracker start-up: deliver journals their processes left behind.

A journal is orphaned when no live process holds its lock (the owner ended or was killed). Replay
sends what is past its acknowledged offset with the original timestamps; see `delivery` for why a
second replay stores nothing twice. A fully delivered journal is deleted.

A journal is data written by some process, not an instruction to us:
- one that cannot be delivered at all (unreadable meta, a bug it triggers) is moved to
  `$MLOPS_HOME/quarantine/` and reported; the others are still delivered;
- your credentials (MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN, ~/.mlflow/credentials) go only to the
  tracking URI you configured: a journal that names another server waits until you name that server
  yourself (`mlops sync --tracking-uri URI`).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlops_platform.tracking.delivery import Delivery, DeliveryCounts, TransientDeliveryError
from mlops_platform.tracking.journal import (
    QUARANTINE_DIR,
    Journal,
    JournalLocked,
    iter_journals,
)

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncResult:
    run_id: str
    state: str  # "delivered" | "in use" | "pending" | "quarantined"
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
    configured_uri: str | None = None,
) -> list[SyncResult]:
    """Replay every orphaned journal under `home`; journals of live processes are skipped.

    Args:
        tracking_uri: deliver there instead of the URI each journal recorded (the user's own choice).
        attempts: tries per journal while the server is unreachable, `backoff` seconds apart (doubling).
        configured_uri: the URI the user configured (default: `settings.resolve_tracking_uri()`); a
            journal naming another one is not sent credentials.
    """
    skip = set(exclude)
    trusted = _normalized(tracking_uri or configured_uri or _configured_uri())
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
            results.append(_sync_one(journal, tracking_uri, trusted, attempts, backoff))
        except Exception as error:  # this journal, not the others: set it aside and go on
            results.append(_quarantine(journal, error))
        finally:
            journal.close()
    return results


def _sync_one(
    journal: Journal, tracking_uri: str | None, trusted: str | None, attempts: int, backoff: float
) -> SyncResult:
    from mlflow import MlflowClient

    meta = journal.meta()
    target = tracking_uri or meta.tracking_uri
    if _normalized(target) != trusted and _credentials_configured():
        return SyncResult(
            meta.run_id,
            "pending",
            DeliveryCounts(),
            journal.directory,
            f"the journal names the tracking server {target}, not the one configured ({trusted}); "
            f"your credentials are not sent there: run `mlops sync --tracking-uri {target}` if you "
            "trust it",
        )
    delivery = Delivery(journal, MlflowClient(target), meta.run_id)
    error = _pump_with_retries(delivery, attempts, backoff)
    if delivery.pending():
        return SyncResult(meta.run_id, "pending", delivery.counts, journal.directory, error)
    journal.remove()
    return SyncResult(meta.run_id, "delivered", delivery.counts, journal.directory)


def _pump_with_retries(delivery: Delivery, attempts: int, backoff: float) -> str | None:
    """Send what the journal holds, `attempts` times at most while the server is unreachable, `backoff`
    seconds apart (doubling); the last transient failure, or None once a pump went through."""
    error = None
    for attempt in range(attempts):
        try:
            delivery.pump()
            return None
        except TransientDeliveryError as failure:
            error = str(failure)
            if attempt + 1 < attempts:
                time.sleep(backoff * 2**attempt)
    return error


def _quarantine(journal: Journal, error: Exception) -> SyncResult:
    """Move a journal that cannot be delivered out of the way, keeping it whole for inspection."""
    name = journal.directory.name
    destination = journal.directory.parent.parent / QUARANTINE_DIR / f"{name}-{int(time.time())}"
    destination.parent.mkdir(parents=True, exist_ok=True)
    message = f"{type(error).__name__}: {error}"[:500]
    shutil.move(str(journal.directory), str(destination))
    (destination / "quarantine_reason.txt").write_text(message + "\n")
    _log.warning("journal %s cannot be delivered (%s); moved to %s", name, message, destination)
    return SyncResult(name, "quarantined", DeliveryCounts(), destination, message)


def _configured_uri() -> str | None:
    from mlops_platform.settings import resolve_tracking_uri

    try:
        return resolve_tracking_uri()
    except Exception:  # nothing configured: no server is trusted with credentials
        return None


def _normalized(uri: str | None) -> str | None:
    return uri.rstrip("/") if uri else None


def _credentials_configured() -> bool:
    from mlflow.utils.credentials import get_default_host_creds

    creds = get_default_host_creds("http://127.0.0.1")  # the host plays no part in what is read
    return any(
        (creds.username, creds.password, creds.token, creds.auth, creds.aws_sigv4, creds.client_cert_path)
    )
