"""Errors a scoring request can earn, each with its HTTP status and MLflow's error-code vocabulary."""

from __future__ import annotations

# How much of an offending value an error message may quote: enough to find it, never the payload.
MAX_QUOTE = 60


def quote(value: object) -> str:
    """A short, safe rendering of one offending value for an error message."""
    text = repr(value)
    return text if len(text) <= MAX_QUOTE else text[: MAX_QUOTE - 3] + "..."


class RequestError(Exception):
    """A request the server refuses; `message` names the problem and never carries the payload."""

    error_code = "BAD_REQUEST"

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status
        if status == 413:
            self.error_code = "REQUEST_LIMIT_EXCEEDED"
        elif status == 422:
            self.error_code = "INVALID_PARAMETER_VALUE"
        elif status >= 500:
            self.error_code = "INTERNAL_ERROR"


def bad_request(message: str) -> RequestError:
    """The body cannot be read as a scoring request (400)."""
    return RequestError(message, 400)


def invalid_input(message: str) -> RequestError:
    """The request is well formed but does not fit the model signature (422)."""
    return RequestError(message, 422)
