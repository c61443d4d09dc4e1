"""The reaper: RUNNING runs whose heartbeat stopped are marked KILLED (their process died unseen).

Only runs carrying our heartbeat tag are judged: a run without it was not made by this tracker and
its liveness is unknown. A beat is judged on the tracking server's clock, in which the heartbeat writes
it (server_clock.py), so neither host's clock matters; and a run is never judged stale before it missed
MISSED_BEATS of the beats its own recorded interval promises, so a long interval cannot get a live run
reaped by a short --stale-after.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from mlops_platform.errors import UserError
from mlops_platform.tracking.tags import ERROR_TAG, HEARTBEAT_INTERVAL_TAG, HEARTBEAT_TAG, REAPED_TAG

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Beats a run may miss (a slow request, a paused host) before its recorded interval lets it be reaped.
MISSED_BEATS = 3


def parse_duration(text: str) -> float:
    """'90s', '10m', '2h', '1d' or plain seconds -> seconds."""
    match = _DURATION.match(text.lower())
    if not match:
        raise UserError(f"invalid duration {text!r}: use a number with s, m, h or d (e.g. 10m)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True)
class ReapedRun:
    run_id: str
    experiment_id: str
    run_name: str
    last_heartbeat: int


def stale_limit(stale_after: float, interval_tag: str | None) -> float:
    """Seconds without a beat after which a run is stale: `stale_after`, or MISSED_BEATS of its own
    recorded interval when that is longer."""
    try:
        interval = float(interval_tag) if interval_tag is not None else 0.0
    except ValueError:
        interval = 0.0
    return max(stale_after, MISSED_BEATS * interval)


def reap_stale_runs(
    client,
    stale_after: float,
    experiment_ids: list[str] | None = None,
    dry_run: bool = False,
    clock: Callable[[], float] | None = None,
) -> list[ReapedRun]:
    """Mark KILLED every RUNNING run whose heartbeat is older than its stale limit (`stale_limit`).

    `clock` gives now on the tracking server's clock; default: a ServerClock on the client's server.
    The run's end time is its last heartbeat: the last moment it was known alive.
    """
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in _all_experiments(client)]
    if not experiment_ids:
        return []
    if clock is None:
        from mlops_platform.tracking.server_clock import ServerClock

        clock = ServerClock(client.tracking_uri).now
    now = clock()
    reaped = []
    page_token = None
    while True:
        page = client.search_runs(
            experiment_ids,
            filter_string="attributes.status = 'RUNNING'",
            max_results=1000,
            page_token=page_token,
        )
        for run in page:
            beat = run.data.tags.get(HEARTBEAT_TAG)
            if beat is None or not beat.isdigit():
                continue
            if int(beat) >= now - stale_limit(stale_after, run.data.tags.get(HEARTBEAT_INTERVAL_TAG)):
                continue
            if not dry_run:
                client.set_tag(run.info.run_id, REAPED_TAG, "true")
                client.set_terminated(run.info.run_id, status="KILLED", end_time=int(beat) * 1000)
            reaped.append(
                ReapedRun(run.info.run_id, run.info.experiment_id, run.info.run_name or "", int(beat))
            )
        page_token = page.token
        if not page_token:
            return reaped


def fail_if_running(run_id: str, reason: str, tracking_uri: str | None = None) -> bool:
    """Mark a run FAILED (with `reason` in the error tag) if it is still RUNNING; True if it was.

    For a launcher that saw its training process die without ending its run (torchrun's workers).
    """
    from mlflow import MlflowClient

    from mlops_platform.settings import resolve_tracking_uri

    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    if client.get_run(run_id).info.status != "RUNNING":
        return False
    client.set_tag(run_id, ERROR_TAG, reason[:5000])
    client.set_terminated(run_id, status="FAILED")
    return True


def _all_experiments(client) -> list:
    experiments, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        experiments.extend(page)
        token = page.token
        if not token:
            return experiments
