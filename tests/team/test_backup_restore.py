"""`mlops server backup` of the running team stack, `mlops server restore` into a fresh PostgreSQL
database and a fresh bucket, and the restored stack serves the champion with identical predictions
to the same login (users and permissions live in the backend store's database and come along)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from team_stack import (
    ADMIN_PASSWORD,
    DB_PASSWORD,
    ModelServer,
    S3Server,
    TeamStack,
    digits_rows,
    keys_under,
    mlops,
    start_stack,
    stop_stack,
)


@pytest.mark.slow
def test_backup_restore_into_a_fresh_database_and_bucket_serves_the_same_champion(
    team_stack: TeamStack, s3_server: S3Server, make_postgres_database: Callable[[], str], tmp_path: Path
):
    tag = uuid.uuid4().hex[:6]
    experiment, model_name, trainer = f"backup-{tag}", f"backup-model-{tag}", f"backup-trainer-{tag}"
    team_stack.add_user(trainer, f"pw-backup-{tag}")
    env = team_stack.client_env(trainer, tmp_path / "trainer")
    trained = mlops(
        "train", "sklearn", "--experiment", experiment, "--model", "logreg", "--cv-folds", "2", env=env
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    promoted = mlops(
        "promote", "--experiment", experiment, "--metric", "test_f1_macro", "--model-name", model_name,
        env=env,
    )  # fmt: skip
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    rows = digits_rows(8)
    server = ModelServer(f"models:/{model_name}@champion", env, tmp_path / "serve-before.log")
    try:
        before = server.predict(rows)
    finally:
        server.stop()

    # Back up the running stack, as its administrator would on the server host.
    folder = tmp_path / "backup"
    made = mlops("server", "backup", str(folder), env=team_stack.server_env())
    assert made.returncode == 0, made.stderr[-3000:]
    assert DB_PASSWORD not in made.stdout + made.stderr and ADMIN_PASSWORD not in made.stdout + made.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["store"]["file"] == "store.dump" and manifest["auth"] is None  # users are in the dump
    assert DB_PASSWORD not in json.dumps(manifest)
    source_keys = keys_under(team_stack.s3.client(), team_stack.bucket, team_stack.prefix)
    assert manifest["artifacts"]["files"] == len(source_keys) > 0

    # Restore into a new database and a new bucket, then start a server on them.
    def restore(stack: TeamStack) -> None:
        restored = mlops("server", "restore", str(folder), env=stack.server_env())
        assert restored.returncode == 0, restored.stderr[-3000:]
        assert DB_PASSWORD not in restored.stdout + restored.stderr
        again = mlops("server", "restore", str(folder), env=stack.server_env())
        assert again.returncode == 1 and "already holds tables" in again.stderr, again.stderr[-2000:]

    copy = start_stack(
        tmp_path / "restored", make_postgres_database(), s3_server, bucket=f"restored-{tag}",
        prefix="artifacts", before_start=restore,
    )  # fmt: skip
    try:
        copy.users[trainer] = team_stack.users[trainer]
        restored_keys = keys_under(s3_server.client(), copy.bucket, copy.prefix)
        assert sorted(key.split("/", 1)[1] for key in restored_keys) == sorted(
            key.split("/", 1)[1] for key in source_keys
        )
        served = ModelServer(
            f"models:/{model_name}@champion",
            copy.client_env(trainer, tmp_path / "trainer-restored"),
            tmp_path / "serve-after.log",
        )
        try:
            assert served.predict(rows) == before
        finally:
            served.stop()
    finally:
        stop_stack(copy)
