"""`mlops server backup|restore` on the embedded stack (SQLite + a local artifact folder): a backup of
a running server restored under a new MLOPS_HOME serves the same runs, metrics, artifacts and aliases.
The team stack (PostgreSQL + S3) is backed up and restored in tests/team/test_end_to_end.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_platform.server import LocalTrackingServer, ServerConfig, free_port


def mlops(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLOPS_HOME": str(home)}
    for key in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION", "MLOPS_AUTH_DATABASE_URI"):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "mlops_platform", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture
def source_server(tmp_path: Path):
    server = LocalTrackingServer(ServerConfig(home=tmp_path / "source", port=free_port()))
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_backup_of_a_running_sqlite_server_restores_under_a_new_home(source_server, tmp_path: Path):
    from mlflow import MlflowClient

    client = MlflowClient(source_server.url)
    experiment_id = client.create_experiment("backed-up")
    run = client.create_run(experiment_id)
    client.log_param(run.info.run_id, "alpha", "0.5")
    for step in range(3):
        client.log_metric(run.info.run_id, "loss", 1 / (step + 1), step=step)
    report = tmp_path / "report.txt"
    report.write_text("the run's report\n")
    client.log_artifact(run.info.run_id, str(report), "reports")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("backed-up-model")
    version = client.create_model_version(
        "backed-up-model", f"{run.info.artifact_uri}/reports", run_id=run.info.run_id
    )
    client.set_registered_model_alias("backed-up-model", "champion", version.version)

    folder = tmp_path / "backup"
    made = mlops("server", "backup", str(folder), home=source_server.home)  # the server keeps running
    assert made.returncode == 0, made.stderr
    assert "store.sqlite" in made.stdout and "1 files" in made.stdout
    assert sorted(path.name for path in folder.iterdir()) == ["artifacts", "manifest.json", "store.sqlite"]
    assert oct(folder.stat().st_mode & 0o777) == "0o700"

    again = mlops("server", "backup", str(folder), home=source_server.home)
    assert again.returncode == 1 and "is not empty" in again.stderr and "Traceback" not in again.stderr

    home = tmp_path / "restored"
    restored = mlops("server", "restore", str(folder), home=home)
    assert restored.returncode == 0, restored.stderr
    twice = mlops("server", "restore", str(folder), home=home)
    assert twice.returncode == 1 and "already exists" in twice.stderr and "Traceback" not in twice.stderr

    server = LocalTrackingServer(ServerConfig(home=home, port=free_port()))
    server.start()
    try:
        copy = MlflowClient(server.url)
        got = copy.get_run(run.info.run_id)
        assert got.data.params == {"alpha": "0.5"} and got.info.status == "FINISHED"
        assert [m.value for m in copy.get_metric_history(run.info.run_id, "loss")] == [1.0, 0.5, 1 / 3]
        assert copy.get_model_version_by_alias("backed-up-model", "champion").version == version.version
        downloaded = copy.download_artifacts(run.info.run_id, "reports/report.txt", str(tmp_path / "dl"))
        assert Path(downloaded).read_text() == "the run's report\n"
    finally:
        server.stop()


def test_restore_refuses_a_folder_that_is_not_a_backup(tmp_path: Path):
    (tmp_path / "nothing").mkdir()
    refused = mlops("server", "restore", str(tmp_path / "nothing"), home=tmp_path / "home")
    assert refused.returncode == 1 and "is not a backup made by `mlops server backup`" in refused.stderr
    assert not (tmp_path / "home" / "mlflow.db").exists()


def test_restore_refuses_a_backup_of_a_newer_mlflow(tmp_path: Path):
    import json

    folder = tmp_path / "backup"
    (folder / "artifacts").mkdir(parents=True)
    (folder / "store.sqlite").write_bytes(b"")
    manifest = {
        "format": 1, "created_at": "2030-01-01T00:00:00Z", "mlflow_version": "99.0.0",
        "store": {"file": "store.sqlite", "source": "sqlite:///x.db"}, "auth": None,
        "artifacts": {"source": "/x", "files": 0, "bytes": 0},
    }  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    refused = mlops("server", "restore", str(folder), home=tmp_path / "home")
    assert refused.returncode == 1 and "made with MLflow 99.0.0, newer than this MLflow" in refused.stderr
    assert not (tmp_path / "home" / "mlflow.db").exists()
