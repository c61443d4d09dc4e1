"""Serving fixtures: models registered once per session on the SQLite server, and one real
`mlops serve` process per test module in front of each (see serving_helpers)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from serving_helpers import Registered, ServerProcess, log_sklearn, log_torch, set_champion

from mlops_platform.server import LocalTrackingServer


@pytest.fixture(scope="session")
def sklearn_model(sqlite_server: LocalTrackingServer) -> Registered:
    name = f"serve-sk-{uuid.uuid4().hex[:6]}"
    version = log_sklearn(sqlite_server.url, name)
    set_champion(sqlite_server.url, name, version)
    return Registered(name, sqlite_server.url, [version])


@pytest.fixture(scope="session")
def torch_model(sqlite_server: LocalTrackingServer) -> Registered:
    name = f"serve-torch-{uuid.uuid4().hex[:6]}"
    version = log_torch(sqlite_server.url, name)
    set_champion(sqlite_server.url, name, version)
    return Registered(name, sqlite_server.url, [version])


# Small enough that the 413 test need not send megabytes.
MAX_BODY_BYTES = 100_000


@pytest.fixture(scope="session")
def _servers(sklearn_model: Registered, torch_model: Registered, tmp_path_factory) -> Iterator[dict]:
    """Both servers start together (their imports overlap) and live for the whole session."""
    logs = tmp_path_factory.mktemp("serve")
    options = ("--max-body-bytes", str(MAX_BODY_BYTES))
    servers = {
        "sklearn": ServerProcess(
            sklearn_model.champion_uri, sklearn_model.tracking_uri, logs / "sk.log", *options
        ),
        "torch": ServerProcess(
            torch_model.champion_uri, torch_model.tracking_uri, logs / "torch.log", *options
        ),
    }
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="session")
def sklearn_server(_servers: dict) -> ServerProcess:
    return _servers["sklearn"].wait_ready()


@pytest.fixture(scope="session")
def torch_server(_servers: dict) -> ServerProcess:
    return _servers["torch"].wait_ready()
