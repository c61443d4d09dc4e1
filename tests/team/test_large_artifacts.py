"""A 512 MiB artifact on the team stack, both ways a client can move it through the artifact proxy:

- multipart (the default of `mlops server start` against an S3 destination, which sets
  MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD/_DOWNLOAD in the server's environment: MLflow 3.18 offers it
  only then; for files of at least MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE = 500 MB): the server
  opens an S3 multipart upload and signs one URL per MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE part (10 MiB);
  the client PUTs the parts to S3 itself and downloads with ranged GETs of presigned URLs.
  The bytes never pass through the server.
- streamed (MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD=false and ..._DOWNLOAD=false, for clients that cannot
  reach the S3 endpoint): one PUT and one GET through the server, which spools to its temporary folder
  and moves the file to S3 with boto3's multipart transfer.

Either way the download has the same sha256, the object in the bucket is a multipart object, the
server's processes grow by less than 200 MB, and nothing is left in the server's TMPDIR.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest
from team_stack import TeamStack

SIZE = 512 * 1024**2
MAX_SERVER_GROWTH = 200 * 1024**2


def write_sample(path: Path, size: int = SIZE) -> str:
    """A sparse file: a random 64 KiB block every 8 MiB (so misplaced parts change the hash), holes
    elsewhere, written in well under a second. Returns its sha256."""
    rng = random.Random(path.name)
    with open(path, "wb") as file:
        file.truncate(size)
        for offset in range(0, size, 8 * 1024**2):
            file.seek(offset)
            file.write(rng.randbytes(64 * 1024))
    return sha256(path)


def sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


class PeakMemory:
    """The largest total RSS of a process tree, sampled every 50 ms in a thread."""

    def __init__(self, processes: list[psutil.Process]):
        self.processes = processes
        self.baseline = self.total()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def total(self) -> int:
        rss = 0
        for process in self.processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                rss += process.memory_info().rss
        return rss

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.total())

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def files_in(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("way", ["multipart", "streamed"])
def test_a_512_mib_artifact_round_trips_through_the_proxy(
    team_stack: TeamStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: str
):
    from mlflow import MlflowClient

    user = f"big-{uuid.uuid4().hex[:6]}"
    team_stack.add_user(user, f"pw-{user}")
    for key, value in team_stack.client_env(user, tmp_path / "home").items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)  # a client: the server's URL and a login, no S3 keys
    if way == "streamed":
        # The server fetches the whole object from S3 into its TMPDIR before the first byte of the
        # response: give it longer than the suite's 30 s read timeout (MLflow's default is 120 s).
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")
        monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "false")
        monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")
    client = MlflowClient(team_stack.url)
    run_id = client.create_run(client.create_experiment(f"large-{user}")).info.run_id
    blob = tmp_path / "blob.bin"
    digest = write_sample(blob)
    server_tmp_before = files_in(team_stack.tmpdir)

    with PeakMemory(team_stack.server_processes()) as upload:
        started = time.monotonic()
        client.log_artifact(run_id, str(blob), "big")
        upload_s = time.monotonic() - started
    blob.unlink()
    with PeakMemory(team_stack.server_processes()) as download:
        started = time.monotonic()
        local = Path(client.download_artifacts(run_id, "big/blob.bin", str(tmp_path / "download")))
        download_s = time.monotonic() - started
    print(
        f"{way}: upload {upload_s:.1f} s (server +{upload.growth / 1024**2:.0f} MB), "
        f"download {download_s:.1f} s (server +{download.growth / 1024**2:.0f} MB)"
    )

    assert local.stat().st_size == SIZE and sha256(local) == digest
    run_artifacts = client.get_run(run_id).info.artifact_uri.split("mlflow-artifacts:/", 1)[1]
    s3, key = team_stack.s3.client(), f"{team_stack.prefix}/{run_artifacts}/big/blob.bin"
    head = s3.head_object(Bucket=team_stack.bucket, Key=key)
    s3.delete_object(Bucket=team_stack.bucket, Key=key)  # 512 MiB the later tests need not carry
    assert head["ContentLength"] == SIZE
    parts = head["ETag"].strip('"').rsplit("-", 1)
    assert len(parts) == 2 and int(parts[1]) > 1, f"{head['ETag']} is not a multipart object's ETag"
    if way == "multipart":
        assert int(parts[1]) == -(-SIZE // (10 * 1024**2))  # one part per 10 MiB chunk the client sent
    assert upload.growth < MAX_SERVER_GROWTH, f"server grew {upload.growth / 1024**2:.0f} MB on upload"
    assert download.growth < MAX_SERVER_GROWTH, f"server grew {download.growth / 1024**2:.0f} MB on download"
    deadline = time.monotonic() + 10  # the streamed download's spool file goes when the response closes
    while files_in(team_stack.tmpdir) - server_tmp_before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert files_in(team_stack.tmpdir) - server_tmp_before == set()
