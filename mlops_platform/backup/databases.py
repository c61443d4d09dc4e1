"""Copying a database with its own tools: pg_dump/pg_restore for PostgreSQL, SQLite's backup API.

The password never reaches a command line (anyone on the machine can read those in `ps`): libpq's
programs get every connection setting from PG* environment variables, PGPASSWORD included, and a URI
without a password leaves the caller's own PGPASSWORD or ~/.pgpass in charge.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from mlops_platform.errors import UserError
from mlops_platform.redaction import redact

# Query parameters of a PostgreSQL URI and the libpq variable each one becomes.
_LIBPQ_QUERY_VARIABLES = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
}
POSTGRES_DUMP = "store.dump"
SQLITE_COPY = "store.sqlite"


class BackupError(UserError):
    """A backup or restore could not be made; the message says why and never quotes a password."""


def database_kind(uri: str) -> str:
    """ "postgresql" or "sqlite"; any other backend store is refused by name."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    if scheme == "sqlite":
        return "sqlite"
    raise BackupError(
        f"cannot back up the store {redact(uri)}: only postgresql:// and sqlite:/// stores are supported"
    )


def dump_file_name(uri: str, stem: str) -> str:
    return f"{stem}.dump" if database_kind(uri) == "postgresql" else f"{stem}.sqlite"


def dump(uri: str, target: Path) -> None:
    """Copy the database at `uri` into the file `target` (consistent snapshot, server may run)."""
    if database_kind(uri) == "postgresql":
        _run_libpq(
            ["pg_dump", "--format=custom", "--no-password", f"--file={target}"], uri, f"dump {redact(uri)}"
        )
    else:
        source = _sqlite_path(uri)
        if not source.exists():
            raise BackupError(f"the SQLite store {source} does not exist")
        # The online backup API copies a consistent snapshot page by page while writers carry on.
        origin = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        with closing(origin), closing(sqlite3.connect(target)) as copy:
            origin.backup(copy)


def check_empty(uri: str) -> None:
    """Refuse a restore into a database that already holds tables: restores go into fresh ones."""
    if database_kind(uri) == "sqlite":
        path = _sqlite_path(uri)
        if path.exists() and path.stat().st_size > 0:
            raise BackupError(f"the SQLite store {path} already exists: restore into a new file")
        return
    import sqlalchemy as sa

    from mlops_platform.registry.locks import sqlalchemy_uri

    engine = sa.create_engine(sqlalchemy_uri(uri), connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as connection:
            tables = sa.inspect(connection).get_table_names()
    except sa.exc.SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip()
        raise BackupError(redact(f"could not connect to {uri}: {reason}")) from None
    finally:
        engine.dispose()
    if tables:
        raise BackupError(
            f"the database {redact(uri)} already holds tables ({', '.join(sorted(tables)[:3])}, ...): "
            "restore into a freshly created, empty database"
        )


def load(source: Path, uri: str) -> None:
    """Restore the file `source` (made by `dump`) into the empty database at `uri`."""
    if database_kind(uri) == "postgresql":
        database = _postgres_url(uri).database
        # --no-owner/--no-privileges: the restored tables belong to whoever restores them, so a new
        # server with other role names can take the backup; one transaction, so a failure leaves the
        # database empty for another try.
        _run_libpq(
            ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
             "--no-password", f"--dbname={database}", str(source)],
            uri,
            f"restore into {redact(uri)}",
        )  # fmt: skip
    else:
        target = _sqlite_path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(source)) as origin, closing(sqlite3.connect(target)) as copy:
            origin.backup(copy)


def _run_libpq(command: list[str], uri: str, what: str) -> None:
    try:
        result = subprocess.run(command, env=libpq_environment(uri), capture_output=True, text=True)
    except FileNotFoundError:
        raise BackupError(
            f"{command[0]} is not installed: install PostgreSQL's client programs (the server's major "
            "version or newer)"
        ) from None
    if result.returncode != 0:
        raise BackupError(redact(f"could not {what}: {command[0]} said:\n{result.stderr.strip()[-2000:]}"))


def libpq_environment(uri: str) -> dict[str, str]:
    """The environment that points pg_dump/pg_restore at `uri`, password in PGPASSWORD only."""
    url = _postgres_url(uri)
    environment = dict(os.environ)
    for variable, value in (
        ("PGHOST", url.host),
        ("PGPORT", url.port),
        ("PGUSER", url.username),
        ("PGDATABASE", url.database),
        ("PGPASSWORD", url.password),
    ):
        if value is not None:
            environment[variable] = str(value)
    for key, value in url.query.items():
        if key not in _LIBPQ_QUERY_VARIABLES:
            raise BackupError(
                f"unsupported query parameter {key!r} in {redact(uri)}; supported: "
                + ", ".join(sorted(_LIBPQ_QUERY_VARIABLES))
            )
        environment[_LIBPQ_QUERY_VARIABLES[key]] = value if isinstance(value, str) else value[-1]
    return environment


def _postgres_url(uri: str):
    from sqlalchemy.engine import make_url

    from mlops_platform.registry.locks import sqlalchemy_uri

    url = make_url(sqlalchemy_uri(uri))
    if not url.database:
        raise BackupError(f"the store URI {redact(uri)} names no database")
    return url


def _sqlite_path(uri: str) -> Path:
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    if not database or database == ":memory:":
        raise BackupError(f"the SQLite store {uri} is not a file")
    return Path(database)
