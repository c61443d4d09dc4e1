"""Replaying journals (`mlops sync`): original timestamps, exactly once, live journals left alone."""

from __future__ import annotations

import shutil
import time

import pytest

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


def _sync_cli(*args: str):
    import subprocess
    import sys
    from pathlib import Path

    return subprocess.run(
        [sys.executable, "-m", "mlops_platform", "sync", *args],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip


def test_a_corrupt_journal_is_quarantined_and_the_others_delivered(
    sqlite_tracking_uri, fresh_experiment
) -> None:
    from mlflow import MlflowClient

    _, experiment_id = fresh_experiment(sqlite_tracking_uri)
    client = MlflowClient(sqlite_tracking_uri)
    run_ids = sorted(client.create_run(experiment_id).info.run_id for _ in range(2))
    # The first in sync's order is the broken one: before, its error stopped the loop.
    broken = _write_journal(None, run_ids[0], experiment_id, sqlite_tracking_uri, steps=3)
    broken.close()
    (broken.directory / "meta.json").write_text('{"run_id": "truncated')
    _write_journal(None, run_ids[1], experiment_id, sqlite_tracking_uri, steps=3).close()

    synced = _sync_cli()
    assert synced.returncode == 1
    assert f"{run_ids[1]}: delivered (6 metrics" in synced.stdout
    assert f"{run_ids[0]}: quarantined" in synced.stdout and "JSONDecodeError" in synced.stdout
    assert "1 journal(s) cannot be delivered and were quarantined" in synced.stderr
    assert client.get_run(run_ids[1]).info.status == "FINISHED"
    assert not broken.directory.exists()

    status = _sync_cli("--status")
    assert status.returncode == 0, status.stderr
    assert "quarantine" in status.stdout and "JSONDecodeError" in status.stdout
    assert "0 journal(s) waiting, 0 rejected file(s), 1 quarantined journal(s)" in status.stdout
    assert _sync_cli().stdout.strip() == "nothing to sync"  # quarantined journals are not retried
    cleaned = _sync_cli("--clean")
    assert "removed quarantined" in cleaned.stdout
    assert "0 journal(s) waiting, 0 rejected file(s), 0 quarantined" in _sync_cli("--status").stdout


def test_the_replay_at_job_start_delivers_past_a_corrupt_journal(
    sqlite_tracking_uri, fresh_experiment
) -> None:
    from mlflow import MlflowClient

    from mlops_platform.tracking import Tracker

    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    client = MlflowClient(sqlite_tracking_uri)
    run_ids = sorted(client.create_run(experiment_id).info.run_id for _ in range(2))
    broken = _write_journal(None, run_ids[0], experiment_id, sqlite_tracking_uri, steps=3)
    broken.close()
    (broken.directory / "meta.json").write_text("[]")
    _write_journal(None, run_ids[1], experiment_id, sqlite_tracking_uri, steps=3).close()
    with Tracker(system_metrics_interval=0).run(experiment=name) as run:
        run.replay_thread.join(timeout=120)
    assert client.get_run(run_ids[1]).info.status == "FINISHED"
    assert len(client.get_metric_history(run_ids[1], "loss")) == 3
    assert [p.name.split("-")[0] for p in (journal_root().parent / "quarantine").iterdir()] == [run_ids[0]]


def test_an_artifact_record_cannot_name_files_outside_its_spool(
    sqlite_tracking_uri, fresh_experiment, tmp_path
) -> None:
    import json
    import os

    from mlflow import MlflowClient

    _, experiment_id = fresh_experiment(sqlite_tracking_uri)
    client = MlflowClient(sqlite_tracking_uri)
    run_id = client.create_run(experiment_id).info.run_id
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "secret.txt").write_text("private key")
    journal = Journal.open_for_run(JournalMeta(run_id, experiment_id, sqlite_tracking_uri))
    link_entry = journal.new_spool_entry()
    os.symlink(victim / "secret.txt", link_entry / "secret.txt")
    honest = journal.new_spool_entry() / "ok.txt"
    honest.write_text("mine")
    forged = [str(victim / "secret.txt"), os.path.relpath(victim / "secret.txt", journal.directory)]
    forged.append(link_entry.relative_to(journal.directory).as_posix() + "/secret.txt")
    with open(journal.records_path, "a") as file:
        file.writelines(json.dumps({"a": path, "d": "stolen"}) + "\n" for path in forged)
    journal.close()
    reopened = Journal.open_for_run(JournalMeta(run_id, experiment_id, sqlite_tracking_uri))
    reopened.append_artifact(honest, "mine")
    reopened.append_end("FINISHED", 1_700_000_000_000)
    reopened.close()

    from mlops_platform.tracking.delivery import DeliveryRejected

    with pytest.warns(DeliveryRejected, match="delivery refused artifacts"):
        [result] = sync_journals()
    assert result.state == "delivered" and result.counts.rejected == 3
    assert [a.path for a in client.list_artifacts(run_id)] == ["mine"]
    assert (victim / "secret.txt").read_text() == "private key"  # neither uploaded nor deleted
    refused = [json.loads(line) for line in result.rejected_path.open()]
    assert [r["key"] for r in refused] == forged
    assert all("spool" in r["error"] for r in refused)


class _Recorder:
    """A real HTTP server that answers every request with `{}` and remembers its headers."""

    def __enter__(self):
        import http.server
        import threading

        seen = self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append((self.path, dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PATCH = _answer

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_credentials_go_only_to_the_configured_tracking_uri(
    sqlite_tracking_uri, fresh_experiment, monkeypatch
) -> None:
    from mlflow import MlflowClient

    _, experiment_id = fresh_experiment(sqlite_tracking_uri)
    client = MlflowClient(sqlite_tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret")
    own = client.create_run(experiment_id).info.run_id
    with _Recorder() as elsewhere:
        _write_journal(None, "f" * 32, experiment_id, elsewhere.url, steps=3).close()
        _write_journal(None, own, experiment_id, sqlite_tracking_uri, steps=3).close()
        results = {r.run_id: r for r in sync_journals(attempts=1)}
        assert elsewhere.requests == []
    assert results[own].state == "delivered"
    assert results["f" * 32].state == "pending"
    assert "credentials are not sent there" in results["f" * 32].error
    assert "--tracking-uri " + elsewhere.url in results["f" * 32].error


def test_a_long_live_journal_is_compacted_and_loses_nothing(sqlite_tracking_uri, fresh_experiment) -> None:
    from mlflow import MlflowClient

    from mlops_platform.tracking import Tracker

    name, _ = fresh_experiment(sqlite_tracking_uri)
    tracker = Tracker(send_interval=0.05, system_metrics_interval=0, journal_compact_bytes=8_000)
    sizes, appended = [], 0
    with tracker.run(experiment=name) as run:
        records = tracker.home / "journal" / run.run_id / "records.jsonl"
        for block in range(20):
            for step in range(block * 100, (block + 1) * 100):
                run.log_metrics({"loss": 1 / (step + 1), "accuracy": step / 2000}, step=step)
            assert run.flush(timeout=60)
            # flush returns at the last acknowledgement; the sender compacts right after, on its own
            # thread: give it that moment (a journal that is never compacted still fails below).
            deadline = time.monotonic() + 10
            while records.stat().st_size >= 24_000 and time.monotonic() < deadline:
                time.sleep(0.02)
            sizes.append(records.stat().st_size)
        appended = sum(len(f'{{"t":0,"s":{s},"m":{{"loss":0.0,"accuracy":0.0}}}}\n') for s in range(2000))
    assert max(sizes) < 40_000 < appended  # without compaction the file ends holding all of it
    client = MlflowClient(sqlite_tracking_uri)
    for key in ("loss", "accuracy"):
        assert sorted(m.step for m in client.get_metric_history(run.run_id, key)) == list(range(2000))
    assert client.get_run(run.run_id).info.status == "FINISHED"
