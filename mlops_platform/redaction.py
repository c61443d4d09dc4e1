"""Keeping passwords out of what we print, log and write.

Connection strings (`postgresql://user:password@host/db`) carry passwords; anything we show a person,
log to MLflow or write to a file others can read goes through `redact` first. Files that must hold a
secret (the server's state and basic-auth config) are written with `write_private` (mode 0600).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# `scheme://user:password@` -- the password part ends at the first "@" (a literal "@" inside a
# password must be percent-encoded in a URI, so the first one is the separator).
_URI_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*):(?P<password>[^@\s]+)@")
MASK = "***"


def redact(text: str) -> str:
    """`text` with the password of every URI in it replaced by ***."""
    return _URI_PASSWORD.sub(lambda match: f"{match.group('head')}:{MASK}@", text)


def has_password(uri: str | None) -> bool:
    """True when `uri` embeds a password (`scheme://user:password@host`)."""
    return bool(uri) and _URI_PASSWORD.search(uri) is not None


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600), also when the file already existed."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file keeps its old mode through os.open
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def open_private_append(path: Path):
    """Open `path` for appending in binary, readable by its owner only (for logs that may quote URIs)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(descriptor, 0o600)
    return os.fdopen(descriptor, "ab")
