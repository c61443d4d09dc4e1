"""docker-compose.yml cannot start here (no Docker engine), so we test what can be tested: it parses,
its services wire together, it holds no secret, and its server flags are the ones our native code runs.
The basic-auth flags themselves are exercised natively against a real server.
"""

from __future__ import annotations

import json
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


def test_validates_against_the_compose_specification():
    """compose-spec (PyPI) wraps the compose_spec Rust crate, a strict parser of the Compose
    Specification: unknown keys, malformed ports and unknown depends_on conditions are errors."""
    from compose_spec import PyCompose

    # PyYAML resolves the `<<:` merge keys (YAML 1.1, as Compose does); the crate then checks the rest.
    parsed = PyCompose.from_json(json.dumps(yaml.safe_load(interpolate(compose_text(), filled_env()))))
    assert set(parsed.service_names()) >= {"postgres", "minio", "mlflow", "serve"}
    with pytest.raises(ValueError, match="imagee"):
        PyCompose.from_yaml("services:\n  web:\n    imagee: nginx:1.27\n")


def test_services_and_health_wiring(compose: dict):
    services = compose["services"]
    assert set(services) == {"postgres", "minio", "create-bucket", "mlflow", "serve-account", "serve"}
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
    assert services["mlflow"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "create-bucket": {"condition": "service_completed_successfully"},
    }
    assert services["serve"]["depends_on"] == {
        "serve-account": {"condition": "service_completed_successfully"}
    }
    assert services["serve-account"]["depends_on"] == {"mlflow": {"condition": "service_healthy"}}
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


def _parse_server_start(arguments: list[str], environment: dict[str, str]) -> ServerConfig:
    """Parse the mlflow service's command and environment with our real `mlops server start` options."""
    from mlops_platform.cli.server import start

    assert arguments[:3] == ["mlops", "server", "start"]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, str(value))
        context = start.make_context("start", arguments[3:])
    params = {k: v for k, v in context.params.items() if k != "foreground"}
    assert context.params["foreground"], "a container must run the server in the foreground"
    return ServerConfig(home=Path("/var/lib/mlops"), **params)


def test_mlflow_service_runs_our_server_with_the_team_flags(compose: dict):
    service = compose["services"]["mlflow"]
    config = _parse_server_start([str(part) for part in service["command"]], service["environment"])
    command = config.server_command()
    # Passwords stay off the command line (anyone on the host can read it).
    assert not any(
        "POSTGRES_PASSWORD" in str(part) or "test-postgres_password" in str(part)
        for part in service["command"]
    )
    assert "test-postgres_password" not in " ".join(command)
    assert config.resolved_backend_store_uri.startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in config.resolved_backend_store_uri
    assert config.resolved_artifacts_destination.startswith("s3://")
    assert command[command.index("--app-name") + 1] == "basic-auth"
    allowed = command[command.index("--allowed-hosts") + 1].split(",")
    assert {"mlflow", "mlflow:*", "serve", "localhost", "localhost:*", "192.168.*"} <= set(allowed)
    assert config.host == "0.0.0.0"
    assert f"127.0.0.1:{config.port}:{config.port}" in service["ports"]
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
    assert f"127.0.0.1:{port}:{port}" in service["ports"]
    assert f":{port}/ping" in " ".join(service["healthcheck"]["test"])
    # The model server reads the registry as the read-only serving account made by serve-account.
    assert service["environment"]["MLFLOW_TRACKING_USERNAME"] != "admin"
    account = compose["services"]["serve-account"]
    assert account["command"][:4] == [
        "mlops",
        "server",
        "add-user",
        service["environment"]["MLFLOW_TRACKING_USERNAME"],
    ]
    assert account["command"][account["command"].index("--read-model") + 1] in context.params["model_uri"]
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
    # As docker-compose.yml passes it: service names and the public host, no ports.
    config = ServerConfig(
        home=tmp_path / "auth-home",
        port=port,
        workers=1,
        app_name="basic-auth",
        allowed_hosts="mlflow,serve,mlflow.team.example",
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

        def as_host(host: str) -> int:
            return requests.post(
                api, json={"max_results": 1}, auth=("admin", password), headers={"Host": host}, timeout=10
            ).status_code

        # The public host with and without a port, the service names, and MLflow's defaults
        # (localhost, a LAN address) all stay accepted.
        for host in (
            "mlflow.team.example",
            "mlflow.team.example:5000",
            "mlflow.team.example:443",
            "mlflow:5000",
            "serve",
            f"127.0.0.1:{port}",
            "localhost:5000",
            "192.168.1.20:5000",
            "10.0.0.7",
        ):
            assert as_host(host) == 200, host
        for host in ("attacker.example", "attacker.example:5000", "mlflow.team.example.attacker.example"):
            assert as_host(host) in (400, 403), host
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


def test_ports_bind_to_loopback_unless_told_and_images_are_pinned():
    values = filled_env()
    compose = yaml.safe_load(interpolate(compose_text(), values))
    everywhere = yaml.safe_load(interpolate(compose_text(), {**values, "BIND_ADDRESS": "0.0.0.0"}))
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for port in everywhere["services"][name].get("ports", []):
            assert str(port).startswith("0.0.0.0:")
        image = service["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image else ""
        assert tag and tag != "latest" and any(ch.isdigit() for ch in tag), f"{name}: {image} is not pinned"


def test_platform_image_is_pinned_and_unprivileged():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.M).group(1)
    assert re.search(r":\d+\.\d+\.\d+", base), base
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_platform_image_can_back_up_the_compose_database(compose: dict):
    """`docker compose exec mlflow mlops server backup` runs pg_dump in the platform image, and pg_dump
    refuses a server of a newer major version than itself."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    client = re.search(r"postgresql-client-(\d+)", dockerfile)
    assert client, "the platform image installs no versioned postgresql-client"
    server = re.match(r"postgres:(\d+)", compose["services"]["postgres"]["image"])
    assert server and int(client.group(1)) >= int(server.group(1)), (client.group(0), server.group(0))
