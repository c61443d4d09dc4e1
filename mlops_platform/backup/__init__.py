"""`mlops server backup|restore`: the tracking server's stores, each copied with its own tools.

A backup folder holds:
    manifest.json                what was copied from where (URIs with passwords removed), counts
    store.dump | store.sqlite    the backend store: pg_dump's custom format, or SQLite's online backup
    auth.dump | auth.sqlite      basic-auth's users and permissions, when they live in a database of
                                 their own (in the team stack they share the backend store's)
    artifacts/                   every file of the artifact store, at its path under the destination

The database is copied first, then the artifacts: every artifact the database refers to already
exists when its copy starts, so a backup taken while the server runs is complete (files logged in the
meantime are copied along, unreferenced and harmless). A restore goes into an empty database and an
empty artifact destination only, and checks the backup before it writes anything.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from mlops_platform.backup import artifacts, databases
from mlops_platform.backup.databases import BackupError
from mlops_platform.redaction import redact

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
__all__ = ["BackupError", "Stores", "backup", "restore"]


@dataclass(frozen=True)
class Stores:
    """Where a tracking server keeps its state, as `mlops server start` resolves it."""

    backend_store_uri: str
    artifacts_destination: str
    # basic-auth's user store when it is a database of its own; None when there is none (no auth) or
    # it is the backend store itself.
    auth_database_uri: str | None = None


def backup(stores: Stores, folder: Path) -> dict:
    """Copy `stores` into the new or empty `folder` (mode 0700: it holds password hashes and data)."""
    if folder.exists() and any(folder.iterdir()):
        raise BackupError(f"the backup folder {folder} is not empty: give a new one")
    databases.database_kind(stores.backend_store_uri)  # refuse an unsupported store before writing
    artifacts.kind(stores.artifacts_destination)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    started = time.time()
    store_file = databases.dump_file_name(stores.backend_store_uri, "store")
    databases.dump(stores.backend_store_uri, folder / store_file)
    auth = None
    if stores.auth_database_uri:
        auth = {
            "file": databases.dump_file_name(stores.auth_database_uri, "auth"),
            "source": redact(stores.auth_database_uri),
        }
        databases.dump(stores.auth_database_uri, folder / auth["file"])
    copied = artifacts.save(stores.artifacts_destination, folder / "artifacts")
    manifest = {
        "format": FORMAT_VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "mlflow_version": _mlflow_version(),
        "store": {"file": store_file, "source": redact(stores.backend_store_uri)},
        "auth": auth,
        "artifacts": {
            "source": stores.artifacts_destination,
            "files": copied.files,
            "bytes": copied.bytes,
        },
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def restore(folder: Path, stores: Stores) -> dict:
    """Restore the backup in `folder` into empty `stores`; nothing is written until all is checked."""
    manifest = read_manifest(folder)
    _check_mlflow_version(manifest["mlflow_version"])
    store_file = manifest["store"]["file"]
    if Path(store_file).suffix != Path(databases.dump_file_name(stores.backend_store_uri, "store")).suffix:
        raise BackupError(
            f"the backup holds {store_file} ({manifest['store']['source']}); it restores into a "
            f"{'PostgreSQL' if store_file.endswith('.dump') else 'SQLite'} store, "
            f"not {redact(stores.backend_store_uri)}"
        )
    auth = manifest.get("auth")
    if auth and not stores.auth_database_uri:
        raise BackupError(
            "the backup holds a separate basic-auth user store: give --auth-database-uri a database of "
            "its own (not the backend store)"
        )
    databases.check_empty(stores.backend_store_uri)
    if auth:
        databases.check_empty(stores.auth_database_uri)
    artifacts.check_empty(stores.artifacts_destination)

    databases.load(folder / store_file, stores.backend_store_uri)
    if auth:
        databases.load(folder / auth["file"], stores.auth_database_uri)
    copied = artifacts.load(folder / "artifacts", stores.artifacts_destination)
    return {**manifest, "restored_artifacts": {"files": copied.files, "bytes": copied.bytes}}


def read_manifest(folder: Path) -> dict:
    """The backup's manifest, after checking that every file it names is there, whole."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise BackupError(f"{folder} is not a backup made by `mlops server backup`: {error}") from None
    if manifest.get("format") != FORMAT_VERSION:
        raise BackupError(
            f"{folder}: backup format {manifest.get('format')!r}, this version reads {FORMAT_VERSION}"
        )
    for part in (manifest["store"], manifest.get("auth")):
        if part and not (folder / part["file"]).is_file():
            raise BackupError(f"the backup {folder} lacks {part['file']}")
    found = (
        artifacts.count(folder / "artifacts") if (folder / "artifacts").is_dir() else artifacts.Copied(0, 0)
    )
    expected = manifest["artifacts"]
    if (found.files, found.bytes) != (expected["files"], expected["bytes"]):
        raise BackupError(
            f"the backup {folder} is incomplete: artifacts/ holds {found.files} files ({found.bytes} bytes), "
            f"the manifest says {expected['files']} ({expected['bytes']} bytes)"
        )
    return manifest


def _check_mlflow_version(made_with: str) -> None:
    """A store migrated by a newer MLflow has tables this one does not know, and `mlflow db upgrade`
    cannot go back: restore with the MLflow that made the backup or a newer one."""
    from packaging.version import Version

    if Version(made_with) > Version(_mlflow_version()):
        raise BackupError(
            f"the backup was made with MLflow {made_with}, newer than this MLflow {_mlflow_version()}: "
            f"restore it with MLflow {made_with} or later"
        )


def _mlflow_version() -> str:
    from importlib.metadata import version

    return version("mlflow")
