"""The on-disk journal of one run: an append-only file of JSON lines plus an acknowledged offset.

Layout under `$MLOPS_HOME/journal/<run_id>/`:
- `meta.json`: run id, experiment id and tracking URI (what `mlops sync` needs to deliver it);
- `records.jsonl`: one JSON object a line, appended with one `os.write` per call. The bytes reach the
  OS page cache before the call returns, so they survive the death of the process (SIGKILL
  included); the sender `fsync`s now and then against a machine crash;
- `acked`: the byte offset up to which the server has confirmed every record, replaced atomically
  after each delivered batch;
- `$MLOPS_HOME/rejected/<run_id>.jsonl`: records the server refused for good (a param that changed
  value), with the server's reason;
- `lock`: `flock`ed by the process that owns the run; the kernel drops it when that process dies, so
  `mlops sync` knows a journal is orphaned without trusting pids.

- `spool/<id>/<name>`: a copy of each artifact (file or folder) waiting to be uploaded, so the caller
  may delete or rewrite its own file at once and an upload survives an outage or a crash.

Faults: every write is checked and only bytes that reached the file are counted. A write cut short
(disk full, file-size limit) is truncated back to the last whole line and raised to the caller, so
the next record starts on a fresh line; a torn tail a dead writer left is cut when the journal is
opened again. A line that still does not parse is skipped with a warning, never a stop.

Record kinds: `{"t": ms, "s": step, "m": {key: value}}` metrics, `{"p": {...}}` params, `{"g": {...}}`
tags, `{"a": "spool/<id>/<name>", "d": artifact_path}` an artifact, `{"e": status, "t": ms}` the end
of the run. A line holds at most `MAX_ENTRIES_PER_LINE`
entries, so batches of whole lines fit MLflow's per-request limits.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import threading
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlops_platform.errors import UserError
from mlops_platform.settings import mlops_home

JOURNAL_DIR = "journal"
RECORDS_FILE = "records.jsonl"
ACK_FILE = "acked"
META_FILE = "meta.json"
LOCK_FILE = "lock"
SPOOL_DIR = "spool"
REJECTED_DIR = "rejected"
QUARANTINE_DIR = "quarantine"
# log_batch takes at most 100 params or tags a request; keeping every line this small lets the sender
# build requests from whole lines, so the acknowledged offset never falls inside a line.
MAX_ENTRIES_PER_LINE = 100
_READ_CHUNK = 4 * 1024 * 1024
_log = logging.getLogger(__name__)


def journal_root(home: Path | None = None) -> Path:
    return (home or mlops_home()) / JOURNAL_DIR


@dataclass(frozen=True)
class JournalMeta:
    run_id: str
    experiment_id: str
    tracking_uri: str


@dataclass(frozen=True)
class Record:
    """One parsed journal line and the byte offset just past it."""

    end: int
    data: dict


class JournalLocked(UserError):
    """Another live process owns this journal (the same run is tracked twice at once)."""


class JournalCorruptLine(UserWarning):
    """A journal line that is not a record (a torn write, a foreign edit): skipped, never delivered."""


class JournalWriteError(OSError):
    """A record could not be appended (disk full, file-size limit); the journal holds none of it."""


class Journal:
    """One run's journal. Writers call the `append_*` methods; the sender reads and acknowledges."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.records_path = self.directory / RECORDS_FILE
        self._write_fd: int | None = None
        self._lock_fd: int | None = None
        self._write_lock = threading.Lock()
        self._written = 0
        self._torn = False
        self.compacted = 0  # bytes dropped from the front by `compact` while this process owned it
        self._encoded_keys: dict[str, str] = {}

    # --- creation and ownership --------------------------------------------------------------------
    @classmethod
    def open_for_run(cls, meta: JournalMeta, home: Path | None = None) -> Journal:
        """Open (creating if needed) the journal of `meta.run_id`, lock it and open it for appending.

        Raises:
            JournalLocked: another live process writes this run's journal.
        """
        directory = journal_root(home) / meta.run_id
        directory.mkdir(parents=True, exist_ok=True)
        journal = cls(directory)
        journal.lock()
        meta_path = directory / META_FILE
        if not meta_path.exists():
            _atomic_write(meta_path, json.dumps(meta.__dict__))
        journal._write_fd = os.open(journal.records_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        journal._written = journal._cut_torn_tail()
        return journal

    def _cut_torn_tail(self) -> int:
        """Drop a partial last line a dead writer left (we hold the lock: nobody writes it now).

        Appending after it would glue the next record to the torn bytes and lose both.
        """
        fd = self._write_fd
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return size
        end = size
        while end > 0:
            start = max(0, end - _READ_CHUNK)
            newline = os.pread(fd, end - start, start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        warnings.warn(
            f"journal {self.records_path}: dropped a torn last line of {size - end} bytes (a write cut "
            "short by a crash or a full disk)",
            JournalCorruptLine,
            stacklevel=3,
        )
        os.ftruncate(fd, end)
        return end

    def lock(self) -> None:
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalLocked(
                f"run {self.directory.name} is being tracked by another live process (its journal "
                f"{self.directory} is locked); wait for it to end or stop it first"
            ) from None
        self._lock_fd = fd

    def close(self) -> None:
        """Close the file and release the lock (the journal stays on disk)."""
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def remove(self) -> None:
        """Delete the journal once everything in it is delivered."""
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def rejected_path(self) -> Path:
        """Where records the server refused for good are kept; outside the journal, which is deleted."""
        return self.directory.parent.parent / REJECTED_DIR / f"{self.directory.name}.jsonl"

    def meta(self) -> JournalMeta:
        return JournalMeta(**json.loads((self.directory / META_FILE).read_text()))

    # --- writing -----------------------------------------------------------------------------------
    @property
    def written(self) -> int:
        """Bytes appended so far (by any process): the offset a flush must see acknowledged."""
        if self._write_fd is not None:
            return self._written
        try:
            return self.records_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _append(self, line: str) -> None:
        data = line.encode()
        with self._write_lock:
            fd = self._write_fd
            if fd is None:
                raise RuntimeError(f"journal {self.directory} is closed")
            if self._torn:  # an earlier torn write could not be cut: end it so this record parses
                data = b"\n" + data
            view = memoryview(data)
            done = 0
            try:
                while done < len(data):
                    written = os.write(fd, view[done:])
                    if written == 0:  # no progress and no error: treat as full rather than spin
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    done += written
            except OSError as error:
                self._undo_partial_write(done)
                raise JournalWriteError(
                    error.errno, f"could not append to the journal {self.records_path}: {error.strerror}"
                ) from error
            self._written += done
            self._torn = False

    def _undo_partial_write(self, done: int) -> None:
        """Cut what a failed append left, so the file ends with a whole line again."""
        if not done:
            return
        try:
            os.ftruncate(self._write_fd, self._written)
        except OSError:
            # The torn bytes stay: count them so offsets stay true, and start the next record on a new
            # line; the reader skips the torn one with a warning.
            self._written += done
            self._torn = True

    def append_metrics(self, metrics: Mapping[str, float], step: int, timestamp_ms: int) -> None:
        """Append float metrics. This is the hot path of training: encoded by hand, ~4x json.dumps."""
        if len(metrics) > MAX_ENTRIES_PER_LINE:
            for chunk in _chunks(metrics):
                self.append_metrics(chunk, step, timestamp_ms)
            return
        keys = self._encoded_keys
        parts = []
        for key, value in metrics.items():
            encoded = keys.get(key)
            if encoded is None:
                encoded = keys[key] = json.dumps(key)
            # repr of a finite float is valid JSON; NaN and infinities take json's spelling.
            parts.append(f"{encoded}:{value!r}" if value - value == 0.0 else f"{encoded}:{json.dumps(value)}")
        self._append(f'{{"t":{timestamp_ms},"s":{step},"m":{{{",".join(parts)}}}}}\n')

    def append_params(self, params: Mapping[str, str]) -> None:
        for chunk in _chunks(params):
            self._append(json.dumps({"p": chunk}) + "\n")

    def append_tags(self, tags: Mapping[str, str]) -> None:
        for chunk in _chunks(tags):
            self._append(json.dumps({"g": chunk}) + "\n")

    def new_spool_entry(self) -> Path:
        """A fresh folder in the spool for one artifact (its file or folder goes inside)."""
        entry = self.directory / SPOOL_DIR / uuid.uuid4().hex
        entry.mkdir(parents=True)
        return entry

    def append_artifact(self, spooled: Path, artifact_path: str | None) -> None:
        """Queue the upload of `spooled` (a file or folder inside a spool entry) to `artifact_path`."""
        relative = spooled.relative_to(self.directory).as_posix()
        self._append(json.dumps({"a": relative, "d": artifact_path}) + "\n")

    def append_end(self, status: str, timestamp_ms: int) -> None:
        self._append(json.dumps({"e": status, "t": timestamp_ms}) + "\n")

    def position(self) -> int:
        """Bytes ever appended, compacted ones included: the logical offset a flush waits for."""
        with self._write_lock:
            return self.compacted + self.written

    def compact(self, acked: int) -> int:
        """Drop the first `acked` bytes (delivered) of a live journal; return how many were dropped.

        The undelivered tail is copied into a new file that replaces the old one, under the write lock,
        so no append is lost. The acknowledged offset is set to 0 before the swap: a crash in between
        replays delivered records, which are stored once (see `delivery`), and never skips a new one.
        """
        with self._write_lock:
            if self._write_fd is None or acked <= 0 or acked > self._written:
                return 0
            tail = os.pread(self._write_fd, self._written - acked, acked)
            temporary = self.records_path.with_name(f".{RECORDS_FILE}.compacting")
            fd = os.open(temporary, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                if tail:
                    os.write(fd, tail)
                os.fsync(fd)
                _atomic_write(self.directory / ACK_FILE, "0")
                os.replace(temporary, self.records_path)
            except BaseException:
                os.close(fd)
                raise
            os.close(self._write_fd)
            self._write_fd = fd
            self._written -= acked
            self.compacted += acked
            return acked

    def sync_to_disk(self) -> None:
        """fsync the records: guards against a machine crash (process death needs no fsync)."""
        if self._write_fd is not None:
            os.fsync(self._write_fd)

    # --- reading and acknowledging -----------------------------------------------------------------
    def acked(self) -> int:
        try:
            return int((self.directory / ACK_FILE).read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def acknowledge(self, offset: int) -> None:
        # FileNotFoundError: the journal was delivered and removed meanwhile (a late sender after a sync).
        with contextlib.suppress(FileNotFoundError):
            _atomic_write(self.directory / ACK_FILE, str(offset))

    def read(self, start: int, max_bytes: int = _READ_CHUNK) -> list[Record]:
        """Complete records from byte `start` on (a line still being written is left for later).

        About `max_bytes` at a time, but always at least one whole line, however long. A line that is
        not a record comes back as an empty record (nothing to send, but its offset is acknowledged).
        """
        try:
            with open(self.records_path, "rb") as file:
                file.seek(start)
                data = file.read(max_bytes)
                while data and b"\n" not in data:  # one line longer than the window: read on
                    more = file.read(max_bytes)
                    if not more:
                        break
                    data += more
        except FileNotFoundError:
            return []
        records = []
        position = start
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            position += len(line)
            if line.strip():
                records.append(Record(position, self._parse(line, position - len(line))))
        return records

    def _parse(self, line: bytes, offset: int) -> dict:
        try:
            data = json.loads(line)
        except ValueError:
            data = None
        if isinstance(data, dict) and _is_record(data):
            return data
        warnings.warn(
            f"journal {self.records_path}: skipped a line at byte {offset} that is not a record "
            f"({len(line)} bytes: {line[:80]!r})",
            JournalCorruptLine,
            stacklevel=4,
        )
        return {}


def iter_journals(home: Path | None = None) -> Iterator[Journal]:
    root = journal_root(home)
    if not root.is_dir():
        return
    for directory in sorted(root.iterdir()):
        if (directory / META_FILE).is_file():
            yield Journal(directory)


_MAPPING_KINDS = ("m", "p", "g")


def _is_record(data: dict) -> bool:
    """The shapes `append_*` write; anything else would break delivery half-way through a batch."""
    if "e" in data:
        return isinstance(data["e"], str) and isinstance(data.get("t"), int)
    if "a" in data:
        return isinstance(data["a"], str) and (data.get("d") is None or isinstance(data["d"], str))
    kinds = [kind for kind in _MAPPING_KINDS if kind in data]
    if len(kinds) != 1 or not isinstance(data[kinds[0]], dict):
        return False
    values = data[kinds[0]].values()
    if kinds[0] == "m":
        return (
            isinstance(data.get("t"), int)
            and isinstance(data.get("s"), int)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        )
    return all(isinstance(v, str) for v in values)


def _chunks(entries: Mapping) -> Iterator[dict]:
    items = list(entries.items())
    for start in range(0, len(items), MAX_ENTRIES_PER_LINE):
        yield dict(items[start : start + MAX_ENTRIES_PER_LINE])


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
