"""Accounts on a basic-auth tracking server, through MLflow's own auth REST API (its AuthServiceClient).

The caller authenticates as an admin with MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, as every
MLflow client does; the new account's password is passed in, never read from a command line.
"""

from __future__ import annotations

from mlops_platform.errors import UserError

# The permissions MLflow grants on one resource, weakest first (DENY: none at all, whatever the
# server's default_permission; https://mlflow.org/docs/latest/auth.html#permissions).
PERMISSIONS = ("DENY", "READ", "USE", "EDIT", "MANAGE")


def ensure_user(tracking_uri: str, username: str, password: str) -> bool:
    """Create `username` with `password`, or set that password when the user exists; True if created.

    Idempotent, so a one-shot provisioning step (docker-compose's serve-account) can run on every start.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    if not username or not password:
        raise UserError("a user needs a non-empty name and password")
    client = AuthServiceClient(tracking_uri)
    try:
        client.create_user(username, password)
        return True
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    client.update_user_password(username, password)
    return False


def grant(tracking_uri: str, username: str, resource_type: str, resource_id: str, permission: str) -> None:
    """Give `username` `permission` on one experiment (id) or registered model (name)."""
    from mlflow.server.auth.client import AuthServiceClient

    if permission not in PERMISSIONS:
        raise UserError(f"invalid permission {permission!r}: choose one of {', '.join(PERMISSIONS)}")
    AuthServiceClient(tracking_uri).grant_user_permission(username, resource_type, resource_id, permission)
