"""The team stack, natively and all real: PostgreSQL (the local server, a throwaway database), an
S3-compatible server (moto's standalone server, the stand-in for MinIO, which cannot be installed here)
and `mlops server start --app-name basic-auth` with proxied artifact serving into s3://bucket/prefix.

Everything is configured the way docker-compose.yml configures it: store URIs, S3 endpoint and keys and
the admin password in the environment, nothing secret on a command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from mlops_platform.server import free_port, wait_for_health

S3_START_TIMEOUT_S = 60
SERVE_READY_TIMEOUT_S = 180
# moto accepts any key pair; these are what the clients and the server are given.
S3_KEYS = {"AWS_ACCESS_KEY_ID": "team-stack-key", "AWS_SECRET_ACCESS_KEY": "team-stack-secret-key"}
ADMIN_PASSWORD = "admin-pw-Team-Stack-7f3a"
# PostgreSQL here trusts local connections, so a password in the URI is accepted and ignored: the stack
# runs with one, and the tests check it never shows.
DB_PASSWORD = "db-pw-Team-Stack-91c2"


def mlops(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the `mlops` command as a user would, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "mlops_platform", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


class ModelServer:
    """`mlops serve` in a subprocess, as the serve container runs it."""

    def __init__(self, model_uri: str, env: dict[str, str], log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mlops_platform", "serve", "--model-uri", model_uri,
                 "--port", str(self.port), "--reload-interval", "0"],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        if not wait_for_health(self.url, SERVE_READY_TIMEOUT_S, self.process, path="/ping"):
            self.stop()
            raise AssertionError(f"mlops serve did not start:\n{log.read_text()[-3000:]}")

    def predict(self, table: dict) -> list:
        response = requests.post(f"{self.url}/invocations", json={"dataframe_split": table}, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()["predictions"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def digits_rows(count: int = 5) -> dict:
    """A few digits as MLflow's dataframe_split, with the column names the trainers log."""
    from sklearn.datasets import load_digits

    frame = load_digits(as_frame=True).data.head(count)
    return {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}


class S3Server:
    """moto's standalone S3 server in its own process, on a free port."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "moto.log"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                # moto spools large objects to temporary files: keep them in our own folder.
                env={**os.environ, "TMPDIR": str(workdir)},
            )
        if not wait_for_health(self.url, S3_START_TIMEOUT_S, self.process, path="/moto-api/"):
            self.stop()
            raise RuntimeError(f"moto's S3 server did not start: {self.log.read_text()[-2000:]}")

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def keys_under(s3_client, bucket: str, prefix: str) -> list[str]:
    """Every object key under s3://bucket/prefix (paged)."""
    keys: list[str] = []
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


@dataclass
class TeamStack:
    """A running team stack and how to reach it."""

    home: Path
    url: str
    backend_store_uri: str
    bucket: str
    prefix: str
    s3: S3Server
    tmpdir: Path
    start_output: str = ""
    users: dict[str, str] = field(default_factory=dict)

    @property
    def artifacts_destination(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def server_env(self) -> dict[str, str]:
        """The environment `mlops server start|stop|status|backup|restore` run with on the server host."""
        env = {
            **os.environ,
            **S3_KEYS,
            "MLOPS_HOME": str(self.home),
            "MLFLOW_BACKEND_STORE_URI": self.backend_store_uri,
            "MLFLOW_ARTIFACTS_DESTINATION": self.artifacts_destination,
            "MLOPS_AUTH_DATABASE_URI": self.backend_store_uri,
            "MLFLOW_S3_ENDPOINT_URL": self.s3.url,
            "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "team-stack-flask-secret",
            # The server's own temporary files, so a test can see that none is left behind.
            "TMPDIR": str(self.tmpdir),
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        return env

    def client_env(self, user: str | None, home: Path, password: str | None = None) -> dict[str, str]:
        """A client machine's environment: the server's URL and a login, nothing of S3 or the database."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "MLFLOW_S3_", "MLFLOW_TRACKING_", "MLFLOW_BACKEND", "MLFLOW_AUTH"))
        }
        env.update({"MLFLOW_TRACKING_URI": self.url, "MLOPS_HOME": str(home)})
        if user is not None:
            env["MLFLOW_TRACKING_USERNAME"] = user
            env["MLFLOW_TRACKING_PASSWORD"] = password if password is not None else self.users[user]
        return env

    def add_user(self, name: str, password: str) -> None:
        from mlops_platform.accounts import ensure_user

        with admin_credentials():
            ensure_user(self.url, name, password)
        self.users[name] = password

    def server_processes(self) -> list[psutil.Process]:
        import json

        pid = json.loads((self.home / "server.json").read_text())["pid"]
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]


class admin_credentials:
    """MLflow's clients read the login from the environment: set the admin's for a block."""

    def __enter__(self) -> None:
        self._saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
        os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
        os.environ["MLFLOW_TRACKING_PASSWORD"] = ADMIN_PASSWORD

    def __exit__(self, *exc) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def with_password(uri: str, password: str) -> str:
    """postgresql+psycopg://user@host/db -> postgresql+psycopg://user:password@host/db"""
    scheme, rest = uri.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{host}"


def start_stack(
    root: Path, database_uri: str, s3: S3Server, bucket: str, prefix: str, before_start=None
) -> TeamStack:
    """Make the bucket, then `mlops server start --app-name basic-auth` on PostgreSQL + S3.

    `before_start(stack)` runs once the bucket exists and before the server starts (a restore).
    """
    s3.client().create_bucket(Bucket=bucket)
    tmpdir = root / "server-tmp"
    tmpdir.mkdir(parents=True)
    port = free_port()
    stack = TeamStack(
        home=root / "server-home",
        url=f"http://127.0.0.1:{port}",
        backend_store_uri=with_password(database_uri, DB_PASSWORD),
        bucket=bucket,
        prefix=prefix,
        s3=s3,
        tmpdir=tmpdir,
    )
    if before_start is not None:
        before_start(stack)
    started = mlops(
        "server", "start", "--app-name", "basic-auth", "--port", str(port), "--workers", "2",
        env=stack.server_env(),
    )  # fmt: skip
    if started.returncode != 0:
        raise RuntimeError(f"mlops server start failed:\n{started.stdout}\n{started.stderr}")
    stack.start_output = started.stdout + started.stderr
    assert requests.get(f"{stack.url}/health", timeout=10).status_code == 200
    return stack


def stop_stack(stack: TeamStack) -> None:
    mlops("server", "stop", env=stack.server_env(), timeout=60)
