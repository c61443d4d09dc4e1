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


@pytest.fixture(scope="module")
def sklearn_server(sklearn_model: Registered, tmp_path_factory) -> Iterator[ServerProcess]:
    server = ServerProcess(
        sklearn_model.champion_uri,
        sklearn_model.tracking_uri,
        tmp_path_factory.mktemp("serve") / "sklearn.log",
    )
    yield server.wait_ready()
    server.stop()


@pytest.fixture(scope="module")
def torch_server(torch_model: Registered, tmp_path_factory) -> Iterator[ServerProcess]:
    server = ServerProcess(
        torch_model.champion_uri, torch_model.tracking_uri, tmp_path_factory.mktemp("serve") / "torch.log"
    )
    yield server.wait_ready()
    server.stop()
