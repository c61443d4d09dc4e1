"""What `mlops sync --status` reports and `mlops sync --clean` removes under `$MLOPS_HOME`.

Journals waiting for delivery, records the server refused for good (`rejected/<run_id>.jsonl`) and
journals set aside as undeliverable (`quarantine/<run_id>-<time>/`). Sync never deletes the last two on
its own: they hold what did not reach the server, and only the user can decide it is not needed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from mlops_platform.settings import mlops_home
from mlops_platform.tracking.journal import (
    QUARANTINE_DIR,
    REJECTED_DIR,
    JournalLocked,
    iter_journals,
)


@dataclass(frozen=True)
class Waiting:
    """A journal not yet delivered: its owner is alive ("in use") or gone ("orphaned")."""

    run_id: str
    state: str
    pending_bytes: int
    path: Path


@dataclass(frozen=True)
class Leftover:
    """A rejected-records file or a quarantined journal, with what it holds."""

    kind: str  # "rejected" | "quarantined"
    path: Path
    detail: str


def waiting_journals(home: Path | None = None) -> list[Waiting]:
    waiting = []
    for journal in iter_journals(home):
        try:
            journal.lock()
            state = "orphaned"
        except JournalLocked:
            state = "in use"
        except FileNotFoundError:  # delivered meanwhile
            continue
        finally:
            journal.close()
        pending = max(0, journal.written - journal.acked())
        waiting.append(Waiting(journal.directory.name, state, pending, journal.directory))
    return waiting


def leftovers(home: Path | None = None) -> list[Leftover]:
    root = home or mlops_home()
    found = []
    rejected = root / REJECTED_DIR
    if rejected.is_dir():
        for path in sorted(rejected.glob("*.jsonl")):
            with open(path, "rb") as file:
                count = sum(1 for line in file if line.strip())
            found.append(Leftover("rejected", path, f"{count} record(s) the server refused"))
    quarantine = root / QUARANTINE_DIR
    if quarantine.is_dir():
        for path in sorted(p for p in quarantine.iterdir() if p.is_dir()):
            reason_file = path / "quarantine_reason.txt"
            reason = reason_file.read_text().strip() if reason_file.is_file() else "reason unknown"
            found.append(Leftover("quarantined", path, reason))
    return found


def clean_leftovers(home: Path | None = None) -> list[Leftover]:
    """Delete every rejected-records file and quarantined journal; return what was deleted."""
    removed = leftovers(home)
    for leftover in removed:
        if leftover.path.is_dir():
            shutil.rmtree(leftover.path)
        else:
            leftover.path.unlink(missing_ok=True)
    return removed
