"""Copying the artifact store with its own tools: boto3 for s3://bucket/prefix, shutil for a folder.

Files keep their paths relative to the destination, which is all the backend store refers to: with
proxied artifact serving runs record `mlflow-artifacts:/<experiment>/<run>/artifacts`, resolved by the
server against its destination, so the copy may go to another bucket, prefix or folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mlops_platform.backup.databases import BackupError

# Files copied at once: S3 round trips dominate for small artifacts (boto3 splits big ones itself).
COPY_THREADS = 8


@dataclass(frozen=True)
class Copied:
    files: int
    bytes: int


def kind(destination: str) -> str:
    """ "s3" or "local"; other stores are refused by name."""
    if destination.startswith("s3://"):
        return "s3"
    if "://" not in destination or destination.startswith("file://"):
        return "local"
    raise BackupError(
        f"cannot back up the artifact store {destination}: only s3://bucket/prefix and local folders "
        "are supported"
    )


def save(destination: str, target: Path) -> Copied:
    """Copy every file under `destination` into the folder `target`."""
    if kind(destination) == "local":
        source = _local_path(destination)
        if source.exists():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True)
        return count(target)
    bucket, prefix = _split_s3(destination)
    client = s3_client()
    target.mkdir(parents=True, exist_ok=True)
    jobs = []
    for key in _keys(client, bucket, prefix):
        relative = key[len(prefix) :].lstrip("/")
        if not relative or key.endswith("/"):
            continue  # folder markers hold nothing
        path = _inside(target, relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((key, path))
    with ThreadPoolExecutor(COPY_THREADS) as pool:
        list(pool.map(lambda job: client.download_file(bucket, job[0], str(job[1])), jobs))
    return count(target)


def check_empty(destination: str) -> None:
    """Refuse a restore into a destination that already holds files."""
    if kind(destination) == "local":
        path = _local_path(destination)
        if path.exists() and any(path.iterdir()):
            raise BackupError(f"the artifact folder {path} is not empty: restore into a new one")
        return
    from botocore.exceptions import ClientError

    bucket, prefix = _split_s3(destination)
    client = s3_client()
    try:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=_folder(prefix), MaxKeys=1)
    except ClientError as error:
        raise BackupError(f"cannot list {destination}: {error}") from None
    if listed.get("KeyCount", 0):
        raise BackupError(
            f"the artifact store {destination} is not empty: restore into a new bucket or prefix"
        )


def load(source: Path, destination: str) -> Copied:
    """Copy the folder `source` (made by `save`) into the empty `destination`."""
    if kind(destination) == "local":
        shutil.copytree(source, _local_path(destination), dirs_exist_ok=True)
        return count(_local_path(destination))
    bucket, prefix = _split_s3(destination)
    client = s3_client()
    files = [path for path in sorted(source.rglob("*")) if path.is_file()]

    def upload(path: Path) -> None:
        client.upload_file(str(path), bucket, _folder(prefix) + path.relative_to(source).as_posix())

    with ThreadPoolExecutor(COPY_THREADS) as pool:
        list(pool.map(upload, files))
    return count(source)


def count(folder: Path) -> Copied:
    files = [path for path in folder.rglob("*") if path.is_file()]
    return Copied(len(files), sum(path.stat().st_size for path in files))


def s3_client():
    """boto3's S3 client as MLflow's server makes it: endpoint from MLFLOW_S3_ENDPOINT_URL (MinIO),
    keys and region from boto3's own chain (AWS_ACCESS_KEY_ID, ~/.aws, instance roles)."""
    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None)


def _keys(client, bucket: str, prefix: str) -> Iterator[str]:
    from botocore.exceptions import ClientError

    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=_folder(prefix)):
            for item in page.get("Contents", []):
                yield item["Key"]
    except ClientError as error:
        raise BackupError(f"cannot list s3://{bucket}/{prefix}: {error}") from None


def _split_s3(destination: str) -> tuple[str, str]:
    bucket, _, prefix = destination[len("s3://") :].partition("/")
    return bucket, prefix.strip("/")


def _folder(prefix: str) -> str:
    # "artifacts/" so that a sibling prefix "artifacts-old/" is not copied along.
    return f"{prefix}/" if prefix else ""


def _local_path(destination: str) -> Path:
    return Path(destination.removeprefix("file://"))


def _inside(root: Path, relative: str) -> Path:
    """root/relative, refusing keys such as ../x that would write outside the backup."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise BackupError(f"refusing the object key {relative!r}: it points outside the backup folder")
    return path
