"""Our commands against the authenticated stack: MLFLOW_TRACKING_USERNAME/PASSWORD are read as MLflow
reads them; a wrong password or a missing permission is one clear line and exit 1, no traceback and no
retries (a 401 or 403 is not retried by MLflow's client; the server's access log shows one request)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from team_stack import ADMIN_PASSWORD, TeamStack, admin_credentials, mlops

from mlops_platform.accounts import grant


@pytest.fixture(scope="module")
def reader(team_stack: TeamStack) -> tuple[str, str]:
    """A user with READ on one experiment, and that experiment's name."""
    from mlflow import MlflowClient

    tag = uuid.uuid4().hex[:6]
    name = f"cli-auth-{tag}"
    with admin_credentials():
        experiment_id = MlflowClient(team_stack.url).create_experiment(name)
        team_stack.add_user(f"reader-{tag}", f"pw-reader-{tag}")
        grant(team_stack.url, f"reader-{tag}", "experiment", experiment_id, "READ")
    return f"reader-{tag}", name


def _assert_one_clear_line(result, *fragments: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_wrong_password_is_one_clear_line(team_stack: TeamStack, reader, tmp_path: Path):
    user, experiment = reader
    env = team_stack.client_env(user, tmp_path, password="not-my-password")
    result = mlops("runs", "search", "--experiment", experiment, env=env)
    _assert_one_clear_line(result, "HTTP 401", f"'{user}'", "MLFLOW_TRACKING_PASSWORD")
    assert "not-my-password" not in result.stdout + result.stderr


def test_no_login_at_all_says_so(team_stack: TeamStack, reader, tmp_path: Path):
    _, experiment = reader
    result = mlops("runs", "search", "--experiment", experiment, env=team_stack.client_env(None, tmp_path))
    _assert_one_clear_line(result, "HTTP 401", "MLFLOW_TRACKING_USERNAME is not set")


def test_reading_with_read_works_and_training_without_edit_is_refused(
    team_stack: TeamStack, reader, tmp_path: Path
):
    user, experiment = reader
    env = team_stack.client_env(user, tmp_path)
    searched = mlops("runs", "search", "--experiment", experiment, env=env)
    assert searched.returncode == 0, searched.stderr
    trained = mlops(
        "train", "sklearn", "--experiment", experiment, "--model", "logreg", "--cv-folds", "2", env=env
    )
    _assert_one_clear_line(trained, "HTTP 403", f"'{user}'", "EDIT")
    for output in (searched, trained):
        assert team_stack.users[user] not in output.stdout + output.stderr
        assert ADMIN_PASSWORD not in output.stdout + output.stderr


def test_a_refused_login_is_asked_once(team_stack: TeamStack, reader, tmp_path: Path):
    """No retries: the server sees exactly one request for one refused command."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    user, _ = reader
    marker = f"never-{uuid.uuid4().hex[:8]}"
    before = (team_stack.home / "server.log").read_text(errors="replace").count(marker)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", user)
        patch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
        with pytest.raises(MlflowException) as refused:
            MlflowClient(team_stack.url).get_experiment_by_name(marker)
    assert refused.value.error_code == "UNAUTHENTICATED" or "401" in str(refused.value)
    log = (team_stack.home / "server.log").read_text(errors="replace")
    assert log.count(marker) - before == 1
