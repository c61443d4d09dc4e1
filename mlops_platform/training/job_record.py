"""Which run a torchrun job logs to, noted by rank 0 in `$MLOPS_HOME/torchrun/<rendezvous id>.json`.

Rank 0 of a restarted job reads it to continue the same run; the launcher reads it to report the run.
A module of its own so that the job (torch_job.py) and the launcher (launcher.py) both use it without
importing each other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlops_platform.settings import mlops_home


def job_record(job_id: str) -> Path:
    """Where rank 0 notes which run a torchrun job (rendezvous id) logs to, for restarts and the launcher."""
    return mlops_home() / "torchrun" / f"{job_id}.json"


def remember_run(job_id: str, run_id: str) -> None:
    path = job_record(job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(f".{os.getpid()}.tmp")
    temp.write_text(json.dumps({"run_id": run_id}))
    os.replace(temp, path)  # atomic: a restart or the launcher never reads half a file


def remembered_run(job_id: str) -> str | None:
    path = job_record(job_id)
    return json.loads(path.read_text())["run_id"] if path.is_file() else None
