"""Replaying journals (`mlops sync`): original timestamps, exactly once, live journals left alone."""

from __future__ import annotations

import shutil

from mlops_platform.tracking.journal import Journal, JournalMeta, journal_root
from mlops_platform.tracking.replay import sync_journals


def _write_journal(home, run_id: str, experiment_id: str, uri: str, steps: int) -> Journal:
    journal = Journal.open_for_run(JournalMeta(run_id, experiment_id, uri), home)
    journal.append_params({"lr": "0.1"})
    for step in range(steps):
        journal.append_metrics({"loss": 1 / (step + 1), "acc": step / steps}, step, 1_700_000_000_000 + step)
    journal.append_tags({"stage": "replayed"})
    journal.append_end("FINISHED", 1_700_000_999_000)
    return journal


def test_replaying_the_same_journal_twice_stores_each_record_once(
    tracking_uri, experiment_id, mlflow_client, tmp_path
) -> None:
    home = tmp_path / "home"
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    journal = _write_journal(home, run_id, experiment_id, tracking_uri, steps=1500)
    # Half acknowledged already, as after a crash between sends.
    records = journal.read(0)
    journal.acknowledge(records[0].end)
    journal.close()
    backup = tmp_path / "backup"
    shutil.copytree(journal.directory, backup)

    first = sync_journals(home)
    assert [(r.run_id, r.state, r.counts.metrics, r.counts.ended) for r in first] == [
        (run_id, "delivered", 3000, "FINISHED")
    ]
    assert not journal.directory.exists()
    # The same journal again, this time with no acknowledgement at all: a replay of everything.
    shutil.copytree(backup, journal.directory)
    (journal.directory / "acked").unlink()
    second = sync_journals(home)
    assert [r.state for r in second] == ["delivered"]

    history = mlflow_client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1500))
    assert {m.timestamp - m.step for m in history} == {1_700_000_000_000}
    assert len(mlflow_client.get_metric_history(run_id, "acc")) == 1500
    stored = mlflow_client.get_run(run_id)
    assert stored.info.status == "FINISHED" and stored.info.end_time == 1_700_000_999_000
    assert stored.data.params == {"lr": "0.1"} and stored.data.tags["stage"] == "replayed"


def test_a_live_journal_is_not_replayed(sqlite_tracking_uri, fresh_experiment) -> None:
    from mlflow import MlflowClient

    _, experiment_id = fresh_experiment(sqlite_tracking_uri)
    client = MlflowClient(sqlite_tracking_uri)
    run_id = client.create_run(experiment_id).info.run_id
    live = _write_journal(None, run_id, experiment_id, sqlite_tracking_uri, steps=5)  # holds the lock
    assert [r.state for r in sync_journals()] == ["in use"]
    assert client.get_metric_history(run_id, "loss") == []
    live.close()
    assert [r.state for r in sync_journals()] == ["delivered"]
    assert not (journal_root() / run_id).exists()


def test_unreachable_server_keeps_the_journal(sqlite_tracking_uri, fresh_experiment) -> None:
    from mlflow import MlflowClient

    from mlops_platform.server import free_port

    _, experiment_id = fresh_experiment(sqlite_tracking_uri)
    run_id = MlflowClient(sqlite_tracking_uri).create_run(experiment_id).info.run_id
    dead = f"http://127.0.0.1:{free_port()}"
    _write_journal(None, run_id, experiment_id, dead, steps=5).close()
    results = sync_journals(attempts=1)
    assert [r.state for r in results] == ["pending"] and results[0].error
    assert (journal_root() / run_id / "records.jsonl").exists()
    # Delivered elsewhere on request (the server moved).
    assert [r.state for r in sync_journals(tracking_uri=sqlite_tracking_uri)] == ["delivered"]
