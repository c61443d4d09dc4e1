"""The config of `mlops server start`: the only source of its defaults (the command's options are
generated from it, and `server.ServerConfig` takes its defaults from here)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mlops_platform.config.base import JobConfig


def _env(name: str) -> dict[str, str]:
    # Options that can carry a password also come from the environment (MLflow's own variable names),
    # so a password need not appear on a command line.
    return {"envvar": name}


class ServerStartConfig(JobConfig):
    """Start `mlflow server` (migrations first) and wait until it is healthy."""

    backend_store_uri: str | None = Field(
        None,
        description="Default: sqlite:///$MLOPS_HOME/mlflow.db (env MLFLOW_BACKEND_STORE_URI).",
        json_schema_extra=_env("MLFLOW_BACKEND_STORE_URI"),
    )
    artifacts_destination: str | None = Field(
        None,
        description="Default: $MLOPS_HOME/artifacts; s3://bucket/prefix for S3 (MLFLOW_S3_ENDPOINT_URL for "
        "MinIO; keys from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) (env MLFLOW_ARTIFACTS_DESTINATION).",
        json_schema_extra=_env("MLFLOW_ARTIFACTS_DESTINATION"),
    )
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(5000, ge=1, le=65535, description="Port to listen on.")
    workers: int = Field(2, ge=1, description="Server worker processes.")
    app_name: Literal["basic-auth"] | None = Field(
        None,
        description="basic-auth: require logins; the admin password comes from MLFLOW_AUTH_ADMIN_PASSWORD.",
    )
    auth_database_uri: str | None = Field(
        None,
        description="basic-auth's user store (default: SQLite in $MLOPS_HOME) (env MLOPS_AUTH_DATABASE_URI).",
        json_schema_extra=_env("MLOPS_AUTH_DATABASE_URI"),
    )
    allowed_hosts: str | None = Field(
        None,
        description="Host names to accept besides localhost and private IPs, comma-separated; any port "
        "(env MLFLOW_SERVER_ALLOWED_HOSTS).",
        json_schema_extra=_env("MLFLOW_SERVER_ALLOWED_HOSTS"),
    )
    foreground: bool = Field(
        False, description="Run in the foreground (containers) instead of in the background."
    )
