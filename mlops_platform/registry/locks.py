"""Locks that serialize promoters of one registered model.

A promoter knows only the tracking server's URL, and MLflow's alias update is last-writer-wins, so
the lock is an optimisation, not the guarantee: promote.py re-reads the champion after every alias
write and re-evaluates until the champion is stable (compare and re-check), which is correct for any
number of promoters on any machines. The locks make the common case quiet (one promoter at a time,
no wasted registrations):

- a file lock under MLOPS_HOME serializes promoters on this machine (threads and processes);
- a PostgreSQL advisory lock, when `lock_uri` names a PostgreSQL database (for example the
  tracking server's backend store), serializes promoters on every machine that can reach it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from mlops_platform.errors import UserError
from mlops_platform.redaction import redact
from mlops_platform.settings import mlops_home

# The environment variable for a lock URI that carries a password (never pass one as a parameter).
LOCK_URI_ENV = "MLOPS_LOCK_URI"
# How long a promoter waits for another to finish before giving up with a clear error.
DEFAULT_LOCK_TIMEOUT_S = 120.0


class LockTimeoutError(UserError):
    """Another promoter held the lock for longer than the timeout."""


def lock_key(tracking_uri: str, model_name: str) -> str:
    """One key per (server, registered model): promoters of other models never wait on each other."""
    return hashlib.sha256(f"{tracking_uri.rstrip('/')}|{model_name}".encode()).hexdigest()


@contextmanager
def file_lock(key: str, timeout: float = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[None]:
    """An exclusive lock file under MLOPS_HOME/locks (works across processes and threads)."""
    from filelock import FileLock, Timeout

    folder = mlops_home() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"promote-{key[:24]}.lock"
    # thread_local=False: FileLock is reentrant per object, so each acquisition needs its own object
    # for threads of one process to exclude each other.
    lock = FileLock(str(path), thread_local=False, is_singleton=False)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise LockTimeoutError(f"another promoter held {path} for more than {timeout:.0f} s") from None
    try:
        yield
    finally:
        lock.release()


_ENGINES: dict[str, object] = {}
_ENGINES_GUARD = threading.Lock()


def _engine(lock_uri: str):
    import sqlalchemy as sa

    with _ENGINES_GUARD:
        if lock_uri not in _ENGINES:
            _ENGINES[lock_uri] = sa.create_engine(sqlalchemy_uri(lock_uri), pool_pre_ping=True)
        return _ENGINES[lock_uri]


def sqlalchemy_uri(uri: str) -> str:
    """MLflow spells PostgreSQL URIs `postgresql://`; use the psycopg 3 driver we ship."""
    if uri.startswith("postgresql://") or uri.startswith("postgres://"):
        return "postgresql+psycopg://" + uri.split("://", 1)[1]
    return uri


def is_postgres_uri(uri: str | None) -> bool:
    return bool(uri) and uri.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


@contextmanager
def advisory_lock(lock_uri: str, key: str, timeout: float = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[None]:
    """A PostgreSQL session advisory lock; it is released on exit, or by the server if we die."""
    import sqlalchemy as sa

    lock_id = int.from_bytes(bytes.fromhex(key[:16]), "big", signed=True)  # a signed 64-bit key
    with _engine(lock_uri).connect() as connection:
        # lock_timeout bounds the wait; SET (not SET LOCAL) because the advisory lock is per session.
        connection.execute(sa.text(f"SET lock_timeout = '{int(timeout * 1000)}ms'"))
        try:
            connection.execute(sa.text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
        except sa.exc.OperationalError as error:
            if getattr(error.orig, "sqlstate", None) == "55P03":  # lock_not_available
                raise LockTimeoutError(
                    f"another promoter held PostgreSQL advisory lock {lock_id} for more than {timeout:.0f} s"
                ) from None
            raise
        connection.commit()
        try:
            yield
        finally:
            connection.execute(sa.text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
            connection.execute(sa.text("RESET lock_timeout"))
            connection.commit()


@contextmanager
def promotion_lock(
    tracking_uri: str, model_name: str, lock_uri: str | None = None, timeout: float = DEFAULT_LOCK_TIMEOUT_S
) -> Iterator[None]:
    """The file lock, plus the PostgreSQL advisory lock when `lock_uri` is a PostgreSQL URI.

    Without `lock_uri`, MLOPS_LOCK_URI from the environment: the way to pass a URI that carries a
    password, which must never be a run parameter (MLflow logs those).
    """
    lock_uri = lock_uri or os.environ.get(LOCK_URI_ENV) or None
    if lock_uri and not is_postgres_uri(lock_uri):
        raise UserError(
            f"invalid lock_uri {redact(lock_uri)!r}: only PostgreSQL URIs (postgresql://...) are supported"
        )
    key = lock_key(tracking_uri, model_name)
    with ExitStack() as stack:
        stack.enter_context(file_lock(key, timeout))
        if lock_uri:
            stack.enter_context(advisory_lock(lock_uri, key, timeout))
        yield
