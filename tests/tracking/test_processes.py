"""Real processes: a trainer killed by signals, a tracking server killed and restarted mid-run."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlops_platform.server import LocalTrackingServer, ServerConfig, free_port
from mlops_platform.tracking import Tracker
from mlops_platform.tracking.replay import sync_journals

REPO = Path(__file__).resolve().parents[2]
MLOPS = [sys.executable, "-m", "mlops_platform"]


def _start_trainer(experiment: str, *options: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.tracking.trainer_process", experiment, *options],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_until(process: subprocess.Popen, prefix: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(prefix):
            return line.split()[1]
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"trainer never printed {prefix!r}: {process.stderr.read()[-3000:]}")


def _steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_marks_killed_after_delivering(sqlite_tracking_uri, fresh_experiment, sig) -> None:
    name, _ = fresh_experiment(sqlite_tracking_uri)
    trainer = _start_trainer(name, "--step-seconds", "0.005", "--report-at", "100")
    run_id = _read_until(trainer, "run")
    _read_until(trainer, "logged")
    trainer.send_signal(sig)
    assert trainer.wait(timeout=60) == 128 + sig
    client = MlflowClient(sqlite_tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    steps = _steps(client, run_id, "loss")
    assert len(steps) >= 100 and steps == list(range(len(steps)))  # all delivered at close, none twice


def test_sigkill_then_sync_delivers_and_reaper_marks_killed(sqlite_tracking_uri, fresh_experiment) -> None:
    name, _ = fresh_experiment(sqlite_tracking_uri)
    # The sender looks at the journal once an hour (after the trainer's start-up flush): what the
    # trainer logs next stays in its journal until the kill, for `mlops sync` to deliver.
    # It trains on after step 500 until the kill, so the kill always lands mid-run.
    trainer = _start_trainer(
        name,
        "--step-seconds",
        "0.001",
        "--report-at",
        "500",
        "--send-interval",
        "3600",
        "--heartbeat-interval",
        "0.3",  # the reaper waits for 3 missed beats of the run's own interval, and at least --stale-after
    )
    run_id = _read_until(trainer, "run")
    _read_until(trainer, "logged")
    trainer.send_signal(signal.SIGKILL)
    trainer.wait(timeout=30)
    client = MlflowClient(sqlite_tracking_uri)
    assert len(_steps(client, run_id, "loss")) < 500
    assert client.get_run(run_id).info.status == "RUNNING"

    synced = subprocess.run([*MLOPS, "sync"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert synced.returncode == 0, synced.stderr
    delivered = re.search(rf"{run_id}: delivered \((\d+) metrics", synced.stdout)
    assert delivered and int(delivered.group(1)) > 0, synced.stdout
    logged = _steps(client, run_id, "loss")
    assert len(logged) >= 500 and logged == list(range(len(logged)))  # every step, each once
    for key in ("accuracy", "lr"):
        assert _steps(client, run_id, key) == logged
    assert client.get_run(run_id).data.params == {"steps": str(10**9), "optimizer.lr": "0.01"}
    assert [a.path for a in client.list_artifacts(run_id, "notes")] == ["notes/progress.txt"]
    again = subprocess.run([*MLOPS, "sync"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "nothing to sync" in again.stdout

    # The heartbeat stopped with the process; a second and a half later it is stale.
    time.sleep(1.5)
    reaped = subprocess.run(
        [*MLOPS, "runs", "reap", "--stale-after", "1s", "--experiment", name],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert reaped.returncode == 0, reaped.stderr
    assert f"marked KILLED: {run_id}" in reaped.stdout
    assert client.get_run(run_id).info.status == "KILLED"


def test_reaper_spares_runs_with_a_live_heartbeat(sqlite_tracking_uri, fresh_experiment) -> None:
    name, _ = fresh_experiment(sqlite_tracking_uri)
    with Tracker(heartbeat_interval=0.5, system_metrics_interval=0).run(experiment=name) as run:
        time.sleep(2.5)
        reaped = subprocess.run(
            [*MLOPS, "runs", "reap", "--stale-after", "2s", "--experiment", name],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        assert reaped.returncode == 0, reaped.stderr
        assert "0 stale run(s) marked KILLED" in reaped.stdout
    assert MlflowClient(sqlite_tracking_uri).get_run(run.run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_server_killed_and_restarted_mid_run_loses_nothing(tmp_path, capfd) -> None:
    server = LocalTrackingServer(ServerConfig(home=tmp_path / "server", port=free_port()))
    server.start()
    restarted = threading.Event()

    def restart() -> None:
        server.start()
        restarted.set()

    try:
        tracker = Tracker(server.url, send_interval=0.05, system_metrics_interval=0, heartbeat_interval=0.5)
        # A second run that ends while the server is down: its final flush gives up after a second.
        closing = Tracker(server.url, close_timeout=1.0, system_metrics_interval=0, replay_on_start=False)
        late_context = closing.run(experiment="outage", run_name="ends-during-outage")
        with tracker.run(experiment="outage") as run:
            late = late_context.__enter__()
            late.log_metrics({"loss": 1.0}, step=0)
            assert late.flush(timeout=30)
            for step in range(2000):
                if step == 300:
                    server.kill()
                if 300 <= step < 400:
                    late.log_metrics({"loss": 1.0 / (step - 298)}, step=step - 299)
                if step == 350:
                    late.log_dict({"written": "during the outage"}, "outage/note.json")
                if step == 400:
                    late_context.__exit__(None, None, None)
                    threading.Thread(target=restart).start()
                run.log_metrics({"loss": 1 / (step + 1), "accuracy": step / 2000, "lr": 0.01}, step=step)
                time.sleep(0.003)
            assert restarted.wait(timeout=180)
            assert run.flush(timeout=120)
        client = MlflowClient(server.url)
        for key in ("loss", "accuracy", "lr"):
            assert _steps(client, run.run_id, key) == list(range(2000)), key
        assert client.get_run(run.run_id).info.status == "FINISHED"
        # That no call waited on the dead server is measured (p50/p99/max, up vs. down) by
        # benchmarks/tracking_overhead.py section (d); wall-clock bounds do not belong in this test.

        # The run that ended during the outage said so and kept its journal; `sync` delivers it.
        assert f"run {late.run_id} ended FINISHED but" in capfd.readouterr().err
        assert (tracker.home / "journal" / late.run_id / "records.jsonl").exists()
        assert client.get_run(late.run_id).info.status == "RUNNING"
        assert [r.state for r in sync_journals()] == ["delivered"]
        assert _steps(client, late.run_id, "loss") == list(range(101))
        assert client.get_run(late.run_id).info.status == "FINISHED"
        assert [a.path for a in client.list_artifacts(late.run_id, "outage")] == ["outage/note.json"]
    finally:
        server.stop()


# A trainer whose disk fills up mid-run (RLIMIT_FSIZE: the kernel cuts the journal write short, then
# refuses it). Recording the failure fails too (its traceback cannot be journaled).
_DISK_FULL_TRAINER = """
import resource, signal, sys
from mlops_platform.tracking import Tracker

tracker = Tracker(system_metrics_interval=0)
with tracker.run(experiment=sys.argv[1]) as run:
    assert run.flush(timeout=60)
    print(f"run {run.run_id}", flush=True)
    size = (tracker.home / "journal" / run.run_id / "records.jsonl").stat().st_size
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 20_011, resource.RLIM_INFINITY))
    for step in range(10**9):
        run.log_metrics({"loss": 1 / (step + 1), "accuracy": step / 1e9}, step=step)
"""


def test_a_full_disk_fails_the_run_and_still_ends_it(sqlite_tracking_uri, fresh_experiment) -> None:
    name, _ = fresh_experiment(sqlite_tracking_uri)
    trainer = subprocess.Popen(
        [sys.executable, "-c", _DISK_FULL_TRAINER, name],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_id = _read_until(trainer, "run")
    _, stderr = trainer.communicate(timeout=120)
    assert trainer.returncode == 1, stderr
    assert "JournalWriteError" in stderr and "File too large" in stderr
    client = MlflowClient(sqlite_tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["mlops.error"].startswith("JournalWriteError")
    steps = _steps(client, run_id, "loss")
    assert len(steps) > 100 and steps == list(range(len(steps)))  # every accepted step, none torn
    assert _steps(client, run_id, "accuracy") == steps
    # Nothing is left for `mlops sync` to trip over.
    synced = subprocess.run([*MLOPS, "sync"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert synced.returncode == 0 and "nothing to sync" in synced.stdout, synced.stdout + synced.stderr
