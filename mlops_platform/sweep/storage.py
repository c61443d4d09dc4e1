"""The study storage: Optuna's RDB storage, its heartbeat, and the lock that keeps the budget exact.

SQLite under MLOPS_HOME serves the processes of one machine; PostgreSQL (the team's database) lets
workers on several hosts join one study. Optuna's heartbeat fails a trial whose worker stopped beating
for `grace_period` seconds, and `RetryHeartbeatStaleTrialCallback(max_retry=1)` (the Optuna 4.9+ name of
RetryFailedTrialCallback) queues it once more.

Why a lock: Optuna creates a trial whenever a worker asks for one, and its `MaxTrialsCallback` only
counts after a trial ends, so concurrent workers overshoot the budget (its documentation says so). A
worker therefore asks for its next trial while holding `budget_lock`: a PostgreSQL advisory lock on the
storage database (held by the session, released by the server if the worker dies), or a file lock
next to the SQLite file. The lock covers the count and Optuna's `ask` only, never a trial's training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlops_platform.errors import UserError
from mlops_platform.registry.locks import advisory_lock, is_postgres_uri, sqlalchemy_uri
from mlops_platform.settings import mlops_home

STORAGE_FILE = "sweeps.db"
LOCK_TIMEOUT_S = 300.0


def default_storage_url() -> str:
    return f"sqlite:///{mlops_home() / STORAGE_FILE}"


def resolve_storage_url(url: str | None) -> str:
    return url or default_storage_url()


def redact(url: str) -> str:
    """The URL with its password replaced by ***: what may be logged, printed or stored in a run."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable storage URL>"


def without_password(text: str, url: str) -> str:
    """`text` (an error message may quote the URL) with the URL's password replaced by ***."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        password = make_url(url).password
    except ArgumentError:
        return text
    return text.replace(str(password), "***") if password else text


def open_storage(
    url: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    on_stale: Callable[[Any, Any], None] | None = None,
) -> Any:
    """Optuna's RDBStorage on `url` (PostgreSQL through the psycopg 3 driver we ship).

    With `heartbeat_interval`, running trials beat and a trial silent for `grace_period` seconds is
    failed by whichever worker looks next; `on_stale(study, trial)` then runs (see worker.py).
    """
    import warnings

    import optuna

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # The heartbeat arguments are flagged experimental; they are Optuna's documented way to fail and
    # retry the trials of dead workers.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                sqlalchemy_uri(url),
                engine_kwargs={"pool_pre_ping": True} if is_postgres_uri(url) else None,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=on_stale,
            )
    except Exception as error:  # the storage is unreachable or unusable: say why, without the password
        raise UserError(
            f"cannot open study storage {redact(url)}: {without_password(str(error), url)}"
        ) from None


@contextmanager
def budget_lock(url: str, study_name: str, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Exclusive among every worker of one study; see the module docstring."""
    key = hashlib.sha256(f"mlops-sweep|{study_name}".encode()).hexdigest()
    if is_postgres_uri(url):
        with advisory_lock(url, key, timeout):
            yield
        return
    from filelock import FileLock, Timeout

    database = Path(url.removeprefix("sqlite:///"))
    path = database.with_name(f"{database.name}.{key[:16]}.lock")
    lock = FileLock(str(path), thread_local=False, is_singleton=False)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise UserError(
            f"another worker of study {study_name!r} held {path} for over {timeout:.0f} s"
        ) from None
    try:
        yield
    finally:
        lock.release()
