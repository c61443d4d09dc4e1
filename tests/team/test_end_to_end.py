"""The platform end to end on the team stack, as a team uses it: a trainer logs in and trains (PyTorch and
scikit-learn), sweeps, promotes, a crashed process's journal is synced and a dead run reaped; the
champion is served by a read-only account; every artifact is in the S3 bucket, none on the server's
disk, and no password is in a parameter, a tag or a journal. Finally the stack is backed up while it
runs, restored into a fresh database and bucket, and the restored stack serves the same predictions."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from team_stack import (
    ADMIN_PASSWORD,
    DB_PASSWORD,
    ModelServer,
    TeamStack,
    digits_rows,
    keys_under,
    mlops,
    start_stack,
    stop_stack,
)


def serve_account(stack: TeamStack, model_name: str, home: Path) -> tuple[str, str]:
    """`mlops server add-user` as the admin: a read-only account with READ on the model."""
    user, password = f"serve-{uuid.uuid4().hex[:6]}", f"pw-serve-{uuid.uuid4().hex}"
    env = {
        **stack.client_env("admin", home, password=ADMIN_PASSWORD),
        "MLOPS_NEW_USER_PASSWORD": password,
    }
    made = mlops("server", "add-user", user, "--read-model", model_name, env=env)
    assert made.returncode == 0, made.stderr
    assert password not in made.stdout + made.stderr
    stack.users[user] = password
    return user, password


@pytest.mark.slow
def test_train_sweep_promote_serve_sync_reap_backup_restore_on_the_team_stack(
    team_stack: TeamStack, make_postgres_database: Callable[[], str], tmp_path: Path
):
    from mlflow import MlflowClient

    tag = uuid.uuid4().hex[:6]
    experiment, model_name = f"team-e2e-{tag}", f"team-digits-{tag}"
    trainer = f"trainer-{tag}"
    team_stack.add_user(trainer, f"pw-trainer-{tag}")
    home = tmp_path / "trainer-home"
    env = team_stack.client_env(trainer, home)

    # Train: the trainer creates the experiment (and so MANAGEs it), both trainers log into it.
    sklearn = mlops(
        "train", "sklearn", "--experiment", experiment, "--model", "logreg", "--cv-folds", "2", env=env
    )
    assert sklearn.returncode == 0, sklearn.stdout[-2000:] + sklearn.stderr[-3000:]
    torch = mlops(
        "train", "torch", "--experiment", experiment, "--model", "mlp", "--hidden-sizes", "32",
        "--epochs", "2", "--device", "cpu", "--cpu-threads", "1", env=env,
    )  # fmt: skip
    assert torch.returncode == 0, torch.stdout[-2000:] + torch.stderr[-3000:]
    # A tiny sweep: two k-NN trials as child runs of a parent, its study in the trainer's MLOPS_HOME.
    sweep = mlops(
        "sweep", "run", "--trainer", "sklearn", "--n-trials", "2", "--metric", "cv_f1_macro_mean",
        "--sampler", "random", "--experiment", experiment, "--model", "knn", "--cv-folds", "2", env=env,
    )  # fmt: skip
    assert sweep.returncode == 0, sweep.stdout[-2000:] + sweep.stderr[-3000:]
    promoted = mlops(
        "promote", "--experiment", experiment, "--metric", "test_f1_macro", "--model-name", model_name,
        env=env,
    )  # fmt: skip
    assert promoted.returncode == 0, promoted.stdout[-2000:] + promoted.stderr[-3000:]

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", trainer)
        patch.setenv("MLFLOW_TRACKING_PASSWORD", team_stack.users[trainer])
        client = MlflowClient(team_stack.url)
        experiment_id = client.get_experiment_by_name(experiment).experiment_id
        runs = client.search_runs([experiment_id])
        champion = client.get_model_version_by_alias(model_name, "champion")
    assert {
        run.data.tags.get("mlops.entry_point", run.data.tags.get("mlflow.source.name", "")) for run in runs
    }
    trained = [run for run in runs if run.info.status == "FINISHED"]
    assert len(trained) >= 2 and champion.run_id in {run.info.run_id for run in trained}
    sweeps = [run for run in runs if run.data.tags.get("mlops.role") == "sweep"]
    assert len(sweeps) == 1 and sweeps[0].info.status == "FINISHED"
    trials = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == sweeps[0].info.run_id]
    assert len(trials) == 2 and {run.info.status for run in trials} == {"FINISHED"}

    # Artifacts: in the bucket under the prefix, nothing on the server's disk.
    keys = keys_under(team_stack.s3.client(), team_stack.bucket, team_stack.prefix)
    for run in trained:
        assert any(f"/{run.info.run_id}/" in key for key in keys), run.info.run_id
    assert any(key.endswith("MLmodel") for key in keys)
    assert not (team_stack.home / "artifacts").exists() or not any((team_stack.home / "artifacts").rglob("*"))

    # No password in any parameter or tag.
    secrets = (ADMIN_PASSWORD, DB_PASSWORD, team_stack.users[trainer])
    for run in runs:
        logged = json.dumps({**run.data.params, **run.data.tags})
        assert not any(secret in logged for secret in secrets), run.info.run_id

    # Serve the champion as a read-only account and predict.
    user, password = serve_account(team_stack, model_name, tmp_path)
    server = ModelServer(
        f"models:/{model_name}@champion",
        team_stack.client_env(user, tmp_path / "serve-home", password=password),
        tmp_path / "serve.log",
    )
    try:
        predictions = server.predict(digits_rows())
        assert len(predictions) == 5
        champion_predictions = predictions
    finally:
        server.stop()
    # That account may read, not write.
    refused = mlops(
        "train", "sklearn", "--experiment", experiment, "--model", "logreg",
        env=team_stack.client_env(user, tmp_path / "serve-home", password=password),
    )  # fmt: skip
    assert refused.returncode == 1 and "HTTP 403" in refused.stderr, refused.stderr[-2000:]

    # A journal a crashed process left behind is delivered by `mlops sync` with the trainer's login.
    from mlops_platform.tracking.journal import Journal, JournalMeta

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", trainer)
        patch.setenv("MLFLOW_TRACKING_PASSWORD", team_stack.users[trainer])
        crashed = client.create_run(experiment_id).info.run_id
        dead = client.create_run(experiment_id).info.run_id
        client.set_tag(dead, "mlops.heartbeat", str(int(time.time()) - 3600))
    journal = Journal.open_for_run(JournalMeta(crashed, experiment_id, team_stack.url), home)
    for step in range(20):
        journal.append_metrics({"loss": 1 / (step + 1)}, step, 1_700_000_000_000 + step)
    journal.append_end("FAILED", 1_700_000_100_000)
    journal.close()
    for path in home.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert not any(secret in text for secret in secrets), f"{path} holds a password"
    synced = mlops("sync", env=env)
    assert synced.returncode == 0 and f"{crashed}: delivered" in synced.stdout, synced.stdout + synced.stderr
    reaped = mlops("runs", "reap", "--stale-after", "10m", "--experiment", experiment, env=env)
    assert reaped.returncode == 0 and dead in reaped.stdout, reaped.stdout + reaped.stderr

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", trainer)
        patch.setenv("MLFLOW_TRACKING_PASSWORD", team_stack.users[trainer])
        assert len(client.get_metric_history(crashed, "loss")) == 20
        assert client.get_run(crashed).info.status == "FAILED"
        assert client.get_run(dead).info.status == "KILLED"

    # Back up the running stack, restore it into a fresh database and bucket, and serve the champion
    # from the restored stack: the same predictions, with the same login (users came along).
    restored = backup_and_restore(team_stack, make_postgres_database(), tmp_path)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MLFLOW_TRACKING_USERNAME", trainer)
            patch.setenv("MLFLOW_TRACKING_PASSWORD", team_stack.users[trainer])
            assert len(MlflowClient(restored.url).get_metric_history(crashed, "loss")) == 20
        server = ModelServer(
            f"models:/{model_name}@champion",
            restored.client_env(user, tmp_path / "serve-restored", password=password),
            tmp_path / "serve-restored.log",
        )
        try:
            assert server.predict(digits_rows()) == champion_predictions
        finally:
            server.stop()
    finally:
        stop_stack(restored)


def backup_and_restore(stack: TeamStack, database_uri: str, tmp_path: Path) -> TeamStack:
    """`mlops server backup` of the running stack; `mlops server restore` into a new database and a
    new bucket; `mlops server start` on them. Returns the restored stack (running)."""
    folder = tmp_path / "backup"
    made = mlops("server", "backup", str(folder), env=stack.server_env())
    assert made.returncode == 0, made.stderr[-3000:]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["store"]["file"] == "store.dump" and manifest["auth"] is None  # users are in the dump
    for text in (made.stdout + made.stderr, json.dumps(manifest)):
        assert DB_PASSWORD not in text and ADMIN_PASSWORD not in text
    source_keys = keys_under(stack.s3.client(), stack.bucket, stack.prefix)
    assert manifest["artifacts"]["files"] == len(source_keys) > 0

    def restore(fresh: TeamStack) -> None:
        restored = mlops("server", "restore", str(folder), env=fresh.server_env())
        assert restored.returncode == 0, restored.stderr[-3000:]
        assert DB_PASSWORD not in restored.stdout + restored.stderr
        again = mlops("server", "restore", str(folder), env=fresh.server_env())
        assert again.returncode == 1 and "already holds tables" in again.stderr, again.stderr[-2000:]

    tag = uuid.uuid4().hex[:8]
    fresh = start_stack(
        tmp_path / "restored", database_uri, stack.s3, bucket=f"restored-{tag}", prefix="restored",
        before_start=restore,
    )  # fmt: skip
    fresh.users.update(stack.users)
    restored_keys = keys_under(stack.s3.client(), fresh.bucket, fresh.prefix)
    relative = {key.split("/", 1)[1] for key in source_keys}
    assert {key.split("/", 1)[1] for key in restored_keys} == relative
    return fresh
