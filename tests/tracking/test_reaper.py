"""The reaper: durations for `mlops runs reap --stale-after`, server clock, each run's own interval."""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient

from mlops_platform.errors import UserError
from mlops_platform.tracking import Tracker
from mlops_platform.tracking.heartbeat import Heartbeat
from mlops_platform.tracking.reaper import parse_duration, reap_stale_runs
from mlops_platform.tracking.server_clock import ServerClock
from mlops_platform.tracking.tags import HEARTBEAT_INTERVAL_TAG, HEARTBEAT_TAG


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("45", 45)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10 minutes", "-5m", "m"])
def test_bad_duration_names_the_value(text: str) -> None:
    with pytest.raises(UserError, match="invalid duration"):
        parse_duration(text)


# ------------------------------------------------------------------------------- clocks and intervals


def test_skewed_clocks_on_the_trainer_or_the_reaper_cannot_reap_a_live_run(
    sqlite_tracking_uri, fresh_experiment
):
    _, experiment_id = fresh_experiment(sqlite_tracking_uri)
    client = MlflowClient(sqlite_tracking_uri)
    run_id = client.create_run(experiment_id).info.run_id
    # The trainer's clock is an hour behind: its beats still carry the server's time.
    behind = ServerClock(sqlite_tracking_uri, local=lambda: time.time() - 3600)
    heartbeat = Heartbeat(client, run_id, interval=0.05, clock=behind.now)
    heartbeat.start()
    deadline = time.monotonic() + 30
    while HEARTBEAT_TAG not in client.get_run(run_id).data.tags and time.monotonic() < deadline:
        time.sleep(0.1)
    heartbeat.stop()
    assert abs(int(client.get_run(run_id).data.tags[HEARTBEAT_TAG]) - time.time()) < 5
    # The reaper's clock is an hour ahead: it judges on the server's clock, and spares the run.
    ahead = ServerClock(sqlite_tracking_uri, local=lambda: time.time() + 3600)
    assert reap_stale_runs(client, 600, [experiment_id], clock=ahead.now) == []
    # What the reaper's own clock would have done:
    wrong = reap_stale_runs(client, 600, [experiment_id], dry_run=True, clock=lambda: time.time() + 3600)
    assert [run.run_id for run in wrong] == [run_id]
    assert client.get_run(run_id).info.status == "RUNNING"


def test_a_run_is_not_stale_before_missing_three_of_its_own_beats(sqlite_tracking_uri, fresh_experiment):
    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    client = MlflowClient(sqlite_tracking_uri)
    with Tracker(heartbeat_interval=3600, system_metrics_interval=0).run(experiment=name) as live:
        assert client.get_run(live.run_id).data.tags[HEARTBEAT_INTERVAL_TAG] == "3600"
        twenty_minutes_ago = str(int(time.time()) - 1200)
        client.set_tag(live.run_id, HEARTBEAT_TAG, twenty_minutes_ago)  # one hourly beat is 20 min old
        dead = client.create_run(
            experiment_id, tags={HEARTBEAT_TAG: twenty_minutes_ago, HEARTBEAT_INTERVAL_TAG: "30"}
        ).info.run_id
        reaped = reap_stale_runs(client, 600, [experiment_id])
        assert [run.run_id for run in reaped] == [dead]
        assert client.get_run(live.run_id).info.status == "RUNNING"
    assert client.get_run(live.run_id).info.status == "FINISHED"
