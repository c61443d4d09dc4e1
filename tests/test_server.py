"""The local tracking server through the `mlops server` command, as a user runs it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from mlops_platform.server import free_port


def mlops(*args: str, home: Path) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "MLOPS_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "mlops_platform", *args], capture_output=True, text=True, env=env
    )


def test_start_status_second_start_and_stop(tmp_path: Path):
    home, port = tmp_path / "home", free_port()
    started = mlops("server", "start", "--port", str(port), "--workers", "1", home=home)
    try:
        assert started.returncode == 0, started.stderr
        url = f"http://127.0.0.1:{port}"
        assert url in started.stdout
        assert requests.get(f"{url}/health", timeout=5).text == "OK"
        assert (home / "server.pid").exists() and (home / "mlflow.db").exists()

        # A client logs through the proxied artifact store and it lands under MLOPS_HOME.
        from mlflow import MlflowClient

        client = MlflowClient(url)
        experiment_id = client.create_experiment("server-smoke")
        run = client.create_run(experiment_id)
        (tmp_path / "note.txt").write_text("hello")
        client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
        assert list((home / "artifacts").rglob("note.txt"))

        status = mlops("server", "status", home=home)
        assert status.returncode == 0 and url in status.stdout

        again = mlops("server", "start", "--port", str(port), home=home)
        assert again.returncode != 0 and "already runs" in again.stderr
    finally:
        stopped = mlops("server", "stop", home=home)
    assert "stopped" in stopped.stdout
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
    assert mlops("server", "status", home=home).returncode == 1
    assert "no tracking server" in mlops("server", "stop", home=home).stdout


def test_port_taken_by_another_process_is_named(tmp_path: Path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = mlops("server", "start", "--port", str(port), home=tmp_path / "home")
    assert result.returncode != 0
    assert f"port {port}" in result.stderr and "already in use" in result.stderr


def test_stop_leaves_foreign_processes_alone(tmp_path: Path):
    """A stale pid file that points at someone else's process must not get it killed."""
    import json
    import time

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        home = tmp_path / "home"
        home.mkdir()
        state = {"pid": bystander.pid, "create_time": time.time() - 3600, "url": "http://127.0.0.1:1"}
        (home / "server.json").write_text(json.dumps(state))
        result = mlops("server", "stop", home=home)
        assert "no tracking server" in result.stdout
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_help_is_fast_and_imports_no_heavy_library():
    code = (
        "import sys; from mlops_platform.cli import cli; "
        "import click.testing as t; r = t.CliRunner().invoke(cli, ['--help']); "
        "assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in ('torch', 'mlflow', 'sklearn', 'pandas') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_fixture_servers_answer_on_both_backends(tracking_uri: str, experiment_id: str, mlflow_client):
    run = mlflow_client.create_run(experiment_id)
    mlflow_client.log_metric(run.info.run_id, "m", 1.0)
    assert mlflow_client.get_run(run.info.run_id).data.metrics == {"m": 1.0}


def test_tracking_uri_falls_back_to_a_live_local_server_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A state file left behind by a crashed server is not taken for a running one."""
    import json

    from mlops_platform.server import LocalTrackingServer, ServerConfig
    from mlops_platform.settings import local_server_url, resolve_tracking_uri

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (home / "server.json").write_text(
        json.dumps({"pid": 999_999_999, "create_time": 0.0, "url": "http://x:1"})
    )
    assert local_server_url() is None
    assert resolve_tracking_uri() != "http://x:1"

    server = LocalTrackingServer(ServerConfig(home=home, port=free_port(), workers=1))
    server.start()
    try:
        assert resolve_tracking_uri() == server.url
        assert resolve_tracking_uri("http://explicit:5000") == "http://explicit:5000"
    finally:
        server.stop()


def test_the_server_offers_presigned_multipart_transfers_unless_the_operator_said_no(
    monkeypatch: pytest.MonkeyPatch,
):
    """MLflow 3.18 offers S3 multipart transfers over presigned URLs only when the server's own
    environment says so (tests/team/test_large_artifacts.py moves 512 MiB that way)."""
    from mlops_platform.server import server_environment

    for name in ("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"):
        monkeypatch.delenv(name, raising=False)
        assert server_environment()[name] == "true"
        monkeypatch.setenv(name, "false")
        assert server_environment()[name] == "false"
