"""The local tracking server: a real `mlflow server` process in the background, managed by pid file.

The embedded default is SQLite plus a local artifact folder under MLOPS_HOME, with proxied artifact
serving, so clients need only the server's URL. The same class starts servers on PostgreSQL for the
tests and for a team that points `--backend-store-uri` elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
import requests

from mlops_platform.config.server import ServerStartConfig
from mlops_platform.errors import UserError
from mlops_platform.redaction import open_private_append, redact, write_private
from mlops_platform.settings import SERVER_STATE_FILE, live_server_state, mlops_home
from mlops_platform.store_indexes import ensure_indexes

PID_FILE = "server.pid"
# How long a worker trusts a verified basic-auth login (see write_auth_config).
AUTH_CACHE_TTL_S = 30
LOG_FILE = "server.log"


class ServerError(UserError):
    """The server could not be started or stopped; the message says why."""


@dataclass(frozen=True)
class ServerConfig:
    """How to run the server. Store locations default to files under `home`."""

    home: Path = field(default_factory=mlops_home)
    backend_store_uri: str | None = None
    artifacts_destination: str | None = None
    # Defaults of `mlops server start`, from its config (their one home).
    host: str = ServerStartConfig.model_fields["host"].default
    port: int = ServerStartConfig.model_fields["port"].default
    workers: int = ServerStartConfig.model_fields["workers"].default
    # Extra environment for the server process (e.g. MLFLOW_AUTH_ADMIN_PASSWORD for basic-auth).
    environment: dict[str, str] = field(default_factory=dict)
    # "basic-auth" turns on MLflow's authentication; the admin password comes only from the
    # MLFLOW_AUTH_ADMIN_PASSWORD environment variable (there is no default anywhere).
    app_name: str | None = None
    # Where basic-auth keeps its users; default sqlite:///$home/basic_auth.db.
    auth_database_uri: str | None = None
    # Host names to accept besides MLflow's defaults (localhost and private IPs, any port): service
    # names in docker-compose, the public host name. Each is accepted with and without a port.
    allowed_hosts: str | None = None

    @property
    def resolved_backend_store_uri(self) -> str:
        return self.backend_store_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def resolved_artifacts_destination(self) -> str:
        return self.artifacts_destination or str(self.home / "artifacts")

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    def server_command(self) -> list[str]:
        # The store URIs travel in the environment (process_environment), not on the command line,
        # where any user of the machine could read their passwords in `ps`.
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--host", self.host,
            "--port", str(self.port),
            "--workers", str(self.workers),
        ]  # fmt: skip
        if self.app_name:
            command += ["--app-name", self.app_name]
        if self.allowed_hosts:
            command += ["--allowed-hosts", ",".join(self.allowed_host_patterns())]
        return command

    def allowed_host_patterns(self) -> list[str]:
        """MLflow's default Host patterns plus each extra host, bare and with any port.

        MLflow's `--allowed-hosts` replaces its defaults (localhost, private IPs), and a Host header
        carries the port whenever it is not the scheme's default, so `mlflow.example.com` alone would
        refuse clients of `http://mlflow.example.com:5000`.
        """
        from mlflow.server.security_utils import get_default_allowed_hosts

        patterns = list(get_default_allowed_hosts())
        for host in (part.strip() for part in (self.allowed_hosts or "").split(",")):
            bare = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
            for pattern in (bare, f"{bare}:*"):
                if bare and pattern not in patterns:
                    patterns.append(pattern)
        return patterns

    def auth_config_file(self) -> Path:
        return self.home / "basic_auth.ini"

    def process_environment(self) -> dict[str, str]:
        """The server's environment, with the basic-auth config file when authentication is on."""
        extra = dict(self.environment)
        extra["MLFLOW_BACKEND_STORE_URI"] = self.resolved_backend_store_uri
        extra["MLFLOW_ARTIFACTS_DESTINATION"] = self.resolved_artifacts_destination
        if self.app_name == "basic-auth":
            extra["MLFLOW_AUTH_CONFIG_PATH"] = str(self.auth_config_file())
        return server_environment(extra)

    def write_auth_config(self) -> None:
        """Write basic-auth's config: our user store, READ for everyone else, no password in it."""
        if not (
            self.environment.get("MLFLOW_AUTH_ADMIN_PASSWORD") or os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD")
        ):
            raise ServerError("--app-name basic-auth needs MLFLOW_AUTH_ADMIN_PASSWORD in the environment")
        database_uri = self.auth_database_uri or f"sqlite:///{self.home / 'basic_auth.db'}"
        # 0600: database_uri may carry the database password.
        write_private(
            self.auth_config_file(),
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = {database_uri}\n"
            "admin_username = admin\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # Checking a password hash (scrypt) costs ~0.1-0.5 s of CPU, and every request of a
            # client carries its password: remember a good login for 30 s per worker. A changed
            # password or a deleted user reaches other workers within those 30 s.
            f"auth_cache_ttl_seconds = {AUTH_CACHE_TTL_S}\n",
        )


def server_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: job runners off (no jobs are used, and they cost two cores here),
    presigned multipart transfers of large artifacts on."""
    environment = dict(os.environ)
    environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    # Large artifacts go between clients and an S3 destination over presigned URLs, bypassing the
    # server (README, "Large artifacts"); since MLflow 3.18 the server offers that only when these are
    # set in its own environment. An operator's "false" stands; a local destination offers neither.
    environment.setdefault("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    environment.setdefault("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "true")
    environment.update(extra or {})
    return environment


def check_database(backend_store_uri: str) -> None:
    """Connect once, so an unreachable database or a refused login is one clear error at once.

    `mlflow db upgrade` retries a failing connection with exponential backoff for over a minute
    before it reports anything.
    """
    if not backend_store_uri.startswith(("postgresql", "mysql", "mssql")):
        return  # SQLite: the file is created by the migration
    import sqlalchemy as sa

    from mlops_platform.registry.locks import sqlalchemy_uri

    connect_args = {"connect_timeout": 10} if backend_store_uri.startswith("postgresql") else {}
    engine = sa.create_engine(sqlalchemy_uri(backend_store_uri), connect_args=connect_args)
    try:
        with engine.connect():
            pass
    except sa.exc.SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip()
        raise ServerError(
            redact(f"could not connect to the backend store {backend_store_uri}: {reason}")
        ) from None
    finally:
        engine.dispose()


def upgrade_database(backend_store_uri: str) -> None:
    """Create or migrate the backend store once, before any worker starts.

    Parallel workers on a fresh SQLite file race on the migrations; one `mlflow db upgrade` first
    leaves them nothing to do.
    """
    result = subprocess.run(
        [sys.executable, "-m", "mlflow", "db", "upgrade", backend_store_uri],
        capture_output=True,
        text=True,
        env=server_environment(),
    )
    if result.returncode != 0:
        raise ServerError(
            redact(f"could not migrate the backend store {backend_store_uri}:\n{result.stderr[-2000:]}")
        )


def port_in_use(host: str, port: int) -> bool:
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((connect_host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(
    url: str, timeout: float, process: subprocess.Popen | None = None, path: str = "/health"
) -> bool:
    """Poll `<url><path>` until it answers 200, the process exits, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            if requests.get(f"{url}{path}", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.25)
    return False


class LocalTrackingServer:
    """Start, inspect and stop one `mlflow server` whose state lives in `config.home`."""

    def __init__(self, config: ServerConfig | None = None):
        self.config = config or ServerConfig()
        self.home = self.config.home
        self.pid_file = self.home / PID_FILE
        self.state_file = self.home / SERVER_STATE_FILE
        self.log_file = self.home / LOG_FILE

    # --- state -------------------------------------------------------------------------------------
    def state(self) -> dict | None:
        """The recorded state of the server this home started, if that process still lives."""
        return live_server_state(self.home)

    def is_running(self) -> bool:
        return self.state() is not None

    @property
    def url(self) -> str:
        state = self.state()
        return state["url"] if state else self.config.url

    # --- lifecycle ---------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Everything before the process starts: free port, folders, auth config, migrations."""
        if port_in_use(self.config.host, self.config.port):
            raise ServerError(
                f"port {self.config.port} on {self.config.host} is already in use by another process; "
                f"choose another with --port"
            )
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        destination = self.config.resolved_artifacts_destination
        if "://" not in destination:
            Path(destination).mkdir(parents=True, exist_ok=True)
        if self.config.app_name == "basic-auth":
            self.config.write_auth_config()
        check_database(self.config.resolved_backend_store_uri)
        upgrade_database(self.config.resolved_backend_store_uri)
        ensure_indexes(self.config.resolved_backend_store_uri)  # ours, after MLflow's migrations

    def run_in_foreground(self) -> None:
        """Prepare, then become the server process (for containers: it stays PID 1's child)."""
        self.prepare()
        command = self.config.server_command()
        os.execve(command[0], command, self.config.process_environment())

    def start(self, timeout: float = 120.0) -> str:
        """Start the server in the background and return its URL once /health answers."""
        running = self.state()
        if running:
            raise ServerError(f"the tracking server already runs at {running['url']} (pid {running['pid']})")
        self.prepare()
        destination = self.config.resolved_artifacts_destination

        with open_private_append(self.log_file) as log:
            process = subprocess.Popen(
                self.config.server_command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.config.process_environment(),
                start_new_session=True,  # its own process group: stop() ends the workers too
            )
        state = {
            "pid": process.pid,
            "create_time": psutil.Process(process.pid).create_time(),
            "url": self.config.url,
            **{k: str(v) for k, v in asdict(self.config).items() if k not in ("home", "environment")},
            "backend_store_uri": self.config.resolved_backend_store_uri,
            "artifacts_destination": destination,
            "log": str(self.log_file),
        }
        self.pid_file.write_text(f"{process.pid}\n")
        # 0600: the store URIs may carry passwords; `mlops server status` prints them redacted.
        write_private(self.state_file, json.dumps(state, indent=2))
        self._process = process
        if not wait_for_health(self.config.url, timeout, process):
            self._terminate(process.pid)
            self._forget()
            raise ServerError(
                redact(f"the tracking server did not become healthy; last log lines:\n{self.log_tail()}")
            )
        return self.config.url

    def stop(self, timeout: float = 20.0) -> bool:
        """Stop the server this home started; return False when none was running."""
        state = self.state()
        if state is None:
            self._forget()
            return False
        self._terminate(state["pid"], timeout)
        self._forget()
        return True

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would (for failure tests)."""
        state = self.state()
        if state is not None:
            _signal_group(state["pid"], signal.SIGKILL)
            _wait_gone(state["pid"], 10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- helpers -----------------------------------------------------------------------------------
    def _terminate(self, pid: int, timeout: float = 20.0) -> None:
        _signal_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, 5)
        process = getattr(self, "_process", None)
        if process is not None and process.pid == pid:
            process.wait(timeout=5)  # reap our own child so it leaves no zombie

    def _forget(self) -> None:
        for path in (self.pid_file, self.state_file):
            path.unlink(missing_ok=True)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    try:
        psutil.Process(pid).wait(timeout=timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    except psutil.Error:
        return True
    return True


@contextmanager
def throwaway_server_unless(uri: str | None) -> Iterator[str]:
    """Yield `uri` when given; otherwise a fresh local server on a temporary store, stopped afterwards.

    For benchmarks and notebooks that should measure against a real server without leaving one behind.
    """
    if uri:
        yield uri
        return
    with tempfile.TemporaryDirectory(prefix="mlops-server-") as home:
        server = LocalTrackingServer(ServerConfig(home=Path(home), port=free_port()))
        server.start()
        try:
            yield server.url
        finally:
            server.stop()
