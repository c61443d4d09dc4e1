"""No password is printed, logged as a run parameter, or left in a file others can read."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from team_stack import ADMIN_PASSWORD, DB_PASSWORD, TeamStack, mlops

from mlops_platform.config.base import ConfigError
from mlops_platform.config.promote import PromoteConfig
from mlops_platform.redaction import redact


def test_server_start_and_status_never_print_a_password(team_stack: TeamStack):
    status = mlops("server", "status", env=team_stack.server_env())
    assert status.returncode == 0, status.stderr
    for output in (team_stack.start_output, status.stdout + status.stderr):
        assert DB_PASSWORD not in output and ADMIN_PASSWORD not in output
        assert "postgresql+psycopg://postgres:***@127.0.0.1" in output
        assert team_stack.artifacts_destination in output


def test_files_that_hold_secrets_are_private(team_stack: TeamStack):
    for name in ("server.json", "basic_auth.ini", "server.log"):
        mode = stat.S_IMODE((team_stack.home / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}"
    assert stat.S_IMODE(team_stack.home.stat().st_mode) & 0o077 == 0
    for path in team_stack.home.rglob("*"):
        if path.is_file() and stat.S_IMODE(path.stat().st_mode) & 0o044:
            assert DB_PASSWORD not in path.read_text(errors="replace"), f"{path} is readable by others"


def test_the_server_command_line_carries_no_password(team_stack: TeamStack):
    """Anyone on the machine can read a command line (ps); store URIs travel in the environment."""
    for process in team_stack.server_processes():
        assert DB_PASSWORD not in " ".join(process.cmdline())


def test_a_failed_start_does_not_quote_the_password(team_stack: TeamStack, tmp_path: Path):
    env = {
        **team_stack.server_env(),
        "MLOPS_HOME": str(tmp_path / "other"),
        "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg://postgres:{DB_PASSWORD}@127.0.0.1:1/nowhere",
    }
    from mlops_platform.server import free_port

    failed = mlops("server", "start", "--port", str(free_port()), env=env, timeout=120)
    assert failed.returncode != 0
    assert "could not connect to the backend store postgresql+psycopg://postgres:***@" in failed.stderr
    assert DB_PASSWORD not in failed.stdout + failed.stderr


def test_lock_uri_with_a_password_is_refused_as_a_parameter():
    with pytest.raises(ConfigError) as refused:
        PromoteConfig.parse(
            {"experiment": "e", "model_name": "m", "lock_uri": f"postgresql://u:{DB_PASSWORD}@db/x"}
        )
    assert DB_PASSWORD not in str(refused.value)
    assert "MLOPS_LOCK_URI" in str(refused.value)
    assert PromoteConfig.parse({"experiment": "e", "model_name": "m", "lock_uri": "postgresql://u@db/x"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://u:p%40ss@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("see postgresql+psycopg://mlflow:s3cr3t@postgres/db and s3://bucket/x", None),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("postgresql://user@h/db", "postgresql://user@h/db"),
    ],
)
def test_redact(text: str, expected: str | None):
    redacted = redact(text)
    if expected is not None:
        assert redacted == expected
    assert "s3cr3t" not in redacted and "p%40ss" not in redacted
