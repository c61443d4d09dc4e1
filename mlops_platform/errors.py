"""Errors a user can fix. The CLI prints their message and exits non-zero, without a traceback."""


class UserError(Exception):
    """Bad input or a missing prerequisite; the message names the value and what is allowed."""
