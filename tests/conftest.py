"""Shared fixtures: real tracking servers (SQLite and PostgreSQL backends) for the test session.

- `tracking_uri`: parametrized over both backends, so a test that takes it runs once on each.
- `sqlite_tracking_uri`: the SQLite server only, for heavy end-to-end tests (`mlflow run`) that need
  not run twice.
- `experiment_name` / `experiment_id`: a fresh experiment per test on `tracking_uri`;
  `fresh_experiment(uri)` makes one on any server.
Every test also gets its own MLOPS_HOME and MLFLOW_TRACKING_URI in the environment, so subprocesses
(`mlops ...`, `mlflow run ...`) talk to the same server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlops_platform.server import LocalTrackingServer, ServerConfig, free_port

POSTGRES_ADMIN_URL = os.environ.get(
    "MLOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() == "true"

# Keep clients from retrying for minutes when a test deliberately takes a server down.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def _start_server(home: Path, backend_store_uri: str | None = None) -> LocalTrackingServer:
    server = LocalTrackingServer(
        ServerConfig(home=home, backend_store_uri=backend_store_uri, port=free_port())
    )
    server.start()
    return server


@pytest.fixture(scope="session")
def make_postgres_database() -> Iterator[Callable[[], str]]:
    """Make throwaway PostgreSQL databases (a URI each); all are dropped at the end of the session."""
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as error:  # any connection failure means: no PostgreSQL here
        message = f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {error}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    names: list[str] = []

    def make() -> str:
        name = f"mlops_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        names.append(name)
        return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    yield make
    with admin.connect() as connection:
        for name in names:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_database_uri(make_postgres_database: Callable[[], str]) -> str:
    """A throwaway PostgreSQL database for this test session, dropped at the end."""
    return make_postgres_database()


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTrackingServer]:
    server = _start_server(tmp_path_factory.mktemp("sqlite-server"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(
    tmp_path_factory: pytest.TempPathFactory, postgres_database_uri: str
) -> Iterator[LocalTrackingServer]:
    server = _start_server(tmp_path_factory.mktemp("postgres-server"), postgres_database_uri)
    yield server
    server.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def tracking_server(request: pytest.FixtureRequest) -> LocalTrackingServer:
    """A running server on each backend in turn."""
    return request.getfixturevalue(f"{'sqlite' if request.param == 'sqlite' else 'postgres'}_server")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test writes journals and state under its own MLOPS_HOME."""
    home = tmp_path / "mlops-home"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    return home


@pytest.fixture
def tracking_uri(tracking_server: LocalTrackingServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.url)
    return tracking_server.url


@pytest.fixture
def sqlite_tracking_uri(sqlite_server: LocalTrackingServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_server.url)
    return sqlite_server.url


@pytest.fixture
def fresh_experiment(request: pytest.FixtureRequest) -> Callable[[str], tuple[str, str]]:
    """Make a new experiment on a server: returns (name, id)."""

    def make(uri: str) -> tuple[str, str]:
        from mlflow import MlflowClient

        name = f"{request.node.name[:60]}-{uuid.uuid4().hex[:8]}"
        return name, MlflowClient(uri).create_experiment(name)

    return make


@pytest.fixture
def experiment(tracking_uri: str, fresh_experiment) -> tuple[str, str]:
    return fresh_experiment(tracking_uri)


@pytest.fixture
def experiment_name(experiment: tuple[str, str]) -> str:
    return experiment[0]


@pytest.fixture
def experiment_id(experiment: tuple[str, str]) -> str:
    return experiment[1]


@pytest.fixture
def mlflow_client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri)
