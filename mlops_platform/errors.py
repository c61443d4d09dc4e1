"""Errors a user can fix. The CLI prints their message and exits non-zero, without a traceback."""


class UserError(Exception):
    """Bad input or a missing prerequisite; the message names the value and what is allowed."""


# HTTP statuses and MLflow error codes that mean "who you are" or "what you may do" was refused.
_ACCESS_STATUSES = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}


def access_denied_status(error: BaseException) -> int | None:
    """401 or 403 when `error` (or an error it was raised from) is the server refusing access."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "error_code", None)
        for status, name in _ACCESS_STATUSES.items():
            if code == name:
                return status
        response = getattr(current, "response", None)
        if getattr(response, "status_code", None) in _ACCESS_STATUSES:
            return response.status_code
        current = current.__cause__ or current.__context__
    return None


def describe_access_denied(status: int, tracking_uri: str) -> str:
    """The one line a user sees when the tracking server refuses them; it never quotes a password."""
    import os

    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if status == 401:
        who = f"user {user!r}" if user else "anonymous requests (MLFLOW_TRACKING_USERNAME is not set)"
        return (
            f"the tracking server {tracking_uri} refused the login of {who} (HTTP 401): check "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    return (
        f"user {user!r} lacks the permission for this on the tracking server {tracking_uri} (HTTP 403): "
        "ask an admin for READ (to read), EDIT (to log runs) or MANAGE (to promote) on the experiment "
        "or registered model"
    )
