"""docker-compose.yml cannot start here (no Docker engine), so we test what can be tested: it parses,
its services wire together, it holds no secret, and its server flags are the ones our native code runs.
The basic-auth flags themselves are exercised natively against a real server.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import requests
import yaml

from mlops_platform.server import LocalTrackingServer, ServerConfig, free_port, server_environment

ROOT = Path(__file__).resolve().parents[1]
VARIABLE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def compose_text() -> str:
    return (ROOT / "docker-compose.yml").read_text()


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's own rules for ${X}, ${X:-default} and ${X:?error}; $$ is a literal $."""

    def substitute(match: re.Match) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        if values.get(name):
            return values[name]
        if op == ":?":
            raise KeyError(f"{name} is required: {arg}")
        return arg if op == ":-" else ""

    return VARIABLE.sub(substitute, text)


def filled_env() -> dict[str, str]:
    return {name: value or f"test-{name.lower()}" for name, value in env_example().items()}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(interpolate(compose_text(), filled_env()))


def test_services_and_health_wiring(compose: dict):
    services = compose["services"]
    assert set(services) == {"postgres", "minio", "create-bucket", "mlflow", "serve"}
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
    assert services["mlflow"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "create-bucket": {"condition": "service_completed_successfully"},
    }
    assert services["serve"]["depends_on"] == {"mlflow": {"condition": "service_healthy"}}
    assert services["create-bucket"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert {"postgres-data", "minio-data"} <= set(compose["volumes"])


def test_no_secret_has_a_default_and_every_variable_is_documented():
    documented = env_example()
    for match in VARIABLE.finditer(compose_text()):
        name = match.group("name")
        assert name in documented, f"{name} is used by docker-compose.yml but not documented in .env.example"
        if re.search("PASSWORD|SECRET", name):
            assert match.group("op") == ":?", f"{name} must be required (${{{name}:?...}}), not defaulted"
            assert documented[name] == "", f".env.example must not carry a value for {name}"
    with pytest.raises(KeyError, match="MLFLOW_AUTH_ADMIN_PASSWORD"):
        interpolate(
            compose_text(), {k: v for k, v in filled_env().items() if k != "MLFLOW_AUTH_ADMIN_PASSWORD"}
        )


def _parse_server_start(arguments: list[str]) -> ServerConfig:
    """Parse the mlflow service's command with our real `mlops server start` options."""
    from mlops_platform.cli.server import start

    assert arguments[:3] == ["mlops", "server", "start"]
    context = start.make_context("start", arguments[3:])
    params = {k: v for k, v in context.params.items() if k != "foreground"}
    assert context.params["foreground"], "a container must run the server in the foreground"
    return ServerConfig(home=Path("/var/lib/mlops"), **params)


def test_mlflow_service_runs_our_server_with_the_team_flags(compose: dict):
    service = compose["services"]["mlflow"]
    config = _parse_server_start([str(part) for part in service["command"]])
    command = config.server_command()
    assert config.resolved_backend_store_uri.startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in config.resolved_backend_store_uri
    assert config.resolved_artifacts_destination.startswith("s3://")
    assert command[command.index("--app-name") + 1] == "basic-auth"
    allowed = command[command.index("--allowed-hosts") + 1].split(",")
    assert {"mlflow", "mlflow:5000", "serve"} <= set(allowed)
    assert config.host == "0.0.0.0"
    assert f"{config.port}:{config.port}" in service["ports"]
    assert f":{config.port}/health" in " ".join(service["healthcheck"]["test"])
    # The same job-runner switch our native servers get.
    env = service["environment"]
    assert (
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]
        == server_environment()["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]
    )
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] and env["MLFLOW_FLASK_SERVER_SECRET_KEY"]


def test_serve_service_speaks_to_the_mlflow_service(compose: dict):
    from mlops_platform.cli import cli

    service = compose["services"]["serve"]
    arguments = [str(part) for part in service["command"]]
    assert arguments[:2] == ["mlops", "serve"]
    serve = cli.get_command(cli.make_context("mlops", ["serve", "--help"], resilient_parsing=True), "serve")
    context = serve.make_context("serve", arguments[2:])
    assert context.params["model_uri"].endswith("@champion")
    port = int(context.params["port"])
    assert f"{port}:{port}" in service["ports"]
    assert f":{port}/ping" in " ".join(service["healthcheck"]["test"])
    mlflow_port = compose["services"]["mlflow"]["command"][
        compose["services"]["mlflow"]["command"].index("--port") + 1
    ]
    assert service["environment"]["MLFLOW_TRACKING_URI"] == f"http://mlflow:{mlflow_port}"


def test_basic_auth_and_allowed_hosts_natively(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The mlflow service's security flags, on a real server: logins required, foreign hosts refused."""
    password = "a-long-test-password-1"
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", password)
    monkeypatch.setenv("MLFLOW_FLASK_SERVER_SECRET_KEY", "test-secret-key")
    port = free_port()
    # --allowed-hosts replaces MLflow's default list, so the address we call it by must be in it too.
    config = ServerConfig(
        home=tmp_path / "auth-home",
        port=port,
        workers=1,
        app_name="basic-auth",
        allowed_hosts=f"mlflow,mlflow:5000,127.0.0.1:{port}",
    )
    server = LocalTrackingServer(config)
    server.start()
    try:
        api = f"{server.url}/api/2.0/mlflow/experiments/search"
        assert requests.post(api, json={"max_results": 1}, timeout=10).status_code == 401
        ok = requests.post(api, json={"max_results": 1}, auth=("admin", password), timeout=10)
        assert ok.status_code == 200, ok.text
        wrong = requests.post(api, json={"max_results": 1}, auth=("admin", "wrong"), timeout=10)
        assert wrong.status_code == 401
        as_service = {"Host": "mlflow:5000"}
        via_service = requests.post(
            api, json={"max_results": 1}, auth=("admin", password), headers=as_service, timeout=10
        )
        assert via_service.status_code == 200
        foreign = requests.post(
            api,
            json={"max_results": 1},
            auth=("admin", password),
            headers={"Host": "attacker.example"},
            timeout=10,
        )
        assert foreign.status_code in (400, 403)
        assert password not in (config.home / "basic_auth.ini").read_text()
    finally:
        server.stop()


def test_basic_auth_refuses_to_start_without_an_admin_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from mlops_platform.server import ServerError

    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    server = LocalTrackingServer(ServerConfig(home=tmp_path / "h", port=free_port(), app_name="basic-auth"))
    with pytest.raises(ServerError, match="MLFLOW_AUTH_ADMIN_PASSWORD"):
        server.start()
    assert not server.is_running()
    assert os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD") is None
