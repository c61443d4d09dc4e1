"""The promotion locks are really taken: a promoter waits for a holder, then times out naming the lock."""

from __future__ import annotations

import threading

import pytest

from mlops_platform.errors import UserError
from mlops_platform.registry import promote_best
from mlops_platform.registry.locks import LockTimeoutError, advisory_lock, file_lock, lock_key, promotion_lock

from .helpers import make_run


def test_file_lock_excludes_threads(tmp_path) -> None:
    """While one holder has the lock another thread times out on it; once released, it gets it."""
    key = lock_key("http://server", "model")
    outcome: dict[str, str] = {}

    def try_lock(when: str) -> None:
        try:
            with file_lock(key, timeout=0.2):
                outcome[when] = "acquired"
        except LockTimeoutError:
            outcome[when] = "timed out"

    def in_thread(when: str) -> None:
        thread = threading.Thread(target=try_lock, args=(when,))
        thread.start()
        thread.join(timeout=30)

    with file_lock(key):
        in_thread("while held")
    in_thread("after release")
    assert outcome == {"while held": "timed out", "after release": "acquired"}


def test_promoter_times_out_on_held_locks(
    sqlite_tracking_uri, fresh_experiment, postgres_database_uri
) -> None:
    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    make_run(sqlite_tracking_uri, experiment_id, {"val_acc": 0.5})
    key = lock_key(sqlite_tracking_uri, "locked-model")
    with file_lock(key), pytest.raises(LockTimeoutError, match=r"promote-.*\.lock"):
        promote_best(name, "val_acc", "locked-model", "max", lock_timeout=0.5)
    # Another machine would not share the file lock; the PostgreSQL advisory lock still excludes it.
    with advisory_lock(postgres_database_uri, key), pytest.raises(LockTimeoutError, match="advisory lock"):
        promote_best(name, "val_acc", "locked-model", "max", lock_uri=postgres_database_uri, lock_timeout=1)
    decision = promote_best(name, "val_acc", "locked-model", "max", lock_uri=postgres_database_uri)
    assert decision.promoted


def test_lock_uri_must_be_postgres(tmp_path) -> None:
    with (
        pytest.raises(UserError, match=r"invalid lock_uri 'sqlite:///x\.db'"),
        promotion_lock("u", "m", "sqlite:///x.db"),
    ):
        pass
