"""The team stack for this folder's tests: one per session (see team_stack.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from team_stack import S3Server, TeamStack, start_stack, stop_stack


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def team_stack(
    tmp_path_factory: pytest.TempPathFactory,
    make_postgres_database: Callable[[], str],
    s3_server: S3Server,
) -> Iterator[TeamStack]:
    stack = start_stack(
        tmp_path_factory.mktemp("team"),
        make_postgres_database(),
        s3_server,
        bucket=f"mlflow-{uuid.uuid4().hex[:8]}",
        prefix="artifacts",
    )
    yield stack
    stop_stack(stack)
