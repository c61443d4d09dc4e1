"""The journal file: what is appended is read back in order, acknowledged offsets persist, one owner."""

from __future__ import annotations

import math

import pytest

from mlops_platform.tracking.journal import (
    MAX_ENTRIES_PER_LINE,
    Journal,
    JournalCorruptLine,
    JournalLocked,
    JournalMeta,
    iter_journals,
)


def _open(home) -> Journal:
    return Journal.open_for_run(JournalMeta("run1", "0", "http://127.0.0.1:1"), home)


def test_append_read_and_acknowledge(tmp_path) -> None:
    journal = _open(tmp_path)
    journal.append_metrics({"loss": 0.5, "nan": math.nan}, step=3, timestamp_ms=1000)
    journal.append_params({"lr": "0.1"})
    journal.append_tags({"t": "v"})
    journal.append_end("FINISHED", 2000)
    records = journal.read(0)
    assert [sorted(r.data) for r in records] == [["m", "s", "t"], ["p"], ["g"], ["e", "t"]]
    assert records[0].data["s"] == 3 and math.isnan(records[0].data["m"]["nan"])
    assert records[-1].end == journal.written
    journal.acknowledge(records[1].end)
    journal.close()
    reopened = Journal(tmp_path / "journal" / "run1")
    assert reopened.acked() == records[1].end
    assert [r.data for r in reopened.read(reopened.acked())] == [
        {"g": {"t": "v"}},
        {"e": "FINISHED", "t": 2000},
    ]
    assert [j.meta().run_id for j in iter_journals(tmp_path)] == ["run1"]


def test_big_dicts_are_split_into_lines_a_batch_can_hold(tmp_path) -> None:
    journal = _open(tmp_path)
    journal.append_metrics({f"m{i}": float(i) for i in range(250)}, step=0, timestamp_ms=1)
    sizes = [len(r.data["m"]) for r in journal.read(0)]
    assert sizes == [MAX_ENTRIES_PER_LINE, MAX_ENTRIES_PER_LINE, 50]


def test_a_partial_last_line_is_left_for_later(tmp_path) -> None:
    journal = _open(tmp_path)
    journal.append_metrics({"a": 1.0}, step=0, timestamp_ms=1)
    with open(journal.records_path, "ab") as file:
        file.write(b'{"t":2,"s":1,"m":{"a"')
    assert len(journal.read(0)) == 1


def test_one_owner_at_a_time(tmp_path) -> None:
    journal = _open(tmp_path)
    with pytest.raises(JournalLocked):
        _open(tmp_path)
    journal.close()
    _open(tmp_path).close()


# A process that hits its file-size limit (RLIMIT_FSIZE stands in for a full disk: the kernel cuts
# the write short, then refuses with EFBIG), and later gets the space back.
_DISK_FULL_SCRIPT = """
import json, resource, signal, sys
from pathlib import Path
from mlops_platform.tracking.journal import Journal, JournalMeta, JournalWriteError

home, limit = Path(sys.argv[1]), int(sys.argv[2])
journal = Journal.open_for_run(JournalMeta("run1", "0", "http://127.0.0.1:1"), home)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death, as ENOSPC would be
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
accepted = 0
try:
    for step in range(100_000):
        journal.append_metrics({f"metric_{i}": step + i / 7 for i in range(20)}, step, 1000 + step)
        accepted += 1
except JournalWriteError as error:
    failure = str(error)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
size_after_failure = journal.records_path.stat().st_size
journal.append_end("FAILED", 9999)
print(json.dumps({"accepted": accepted, "failure": failure, "written": journal.written,
                  "size_after_failure": size_after_failure}))
"""


def test_a_write_cut_short_leaves_whole_lines_and_the_end_still_recorded(tmp_path) -> None:
    import json
    import subprocess
    import sys

    limit = 50_000 + 123  # not on a line boundary: the last write is cut mid-line
    done = subprocess.run(
        [sys.executable, "-c", _DISK_FULL_SCRIPT, str(tmp_path), str(limit)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    report = json.loads(done.stdout)
    assert "File too large" in report["failure"]
    # Nothing of the failed record was kept or counted: the file ends with a whole line.
    assert report["size_after_failure"] < limit
    journal = Journal(tmp_path / "journal" / "run1")
    assert journal.records_path.stat().st_size == report["written"]
    records = journal.read(0)
    assert [r.data["s"] for r in records[:-1]] == list(range(report["accepted"]))
    assert records[-1].data == {"e": "FAILED", "t": 9999}


def test_a_torn_tail_left_by_a_dead_writer_is_cut_when_reopened(tmp_path) -> None:
    journal = _open(tmp_path)
    journal.append_metrics({"a": 1.0}, step=0, timestamp_ms=1)
    journal.close()
    with open(journal.records_path, "ab") as file:
        file.write(b'{"t":2,"s":1,"m":{"a"')
    with pytest.warns(JournalCorruptLine, match="torn last line"):
        reopened = _open(tmp_path)
    reopened.append_end("FINISHED", 5)
    assert [r.data for r in reopened.read(0)] == [
        {"t": 1, "s": 0, "m": {"a": 1.0}},
        {"e": "FINISHED", "t": 5},
    ]


def test_a_corrupt_line_is_skipped_with_a_warning_and_its_offset_acknowledged(tmp_path) -> None:
    journal = _open(tmp_path)
    journal.append_metrics({"a": 1.0}, step=0, timestamp_ms=1)
    journal.close()
    with open(journal.records_path, "ab") as file:
        file.write(b'{"t":2,"s":1,"m":{"a"\n{"m": "not a mapping"}\n[1, 2]\n')
    reopened = _open(tmp_path)
    reopened.append_end("FINISHED", 5)
    with pytest.warns(JournalCorruptLine, match="not a record") as caught:
        records = reopened.read(0)
    assert len(caught) == 3
    assert [r.data for r in records] == [
        {"t": 1, "s": 0, "m": {"a": 1.0}},
        {},
        {},
        {},
        {"e": "FINISHED", "t": 5},
    ]
    assert records[-1].end == reopened.written


def test_a_line_longer_than_the_read_window_is_read_whole(tmp_path) -> None:
    journal = _open(tmp_path)
    journal.append_tags({"big": "x" * 5000})
    journal.append_end("FINISHED", 5)
    records = journal.read(0, max_bytes=64)
    assert records[0].data == {"g": {"big": "x" * 5000}}
    assert journal.read(records[0].end, max_bytes=64)[0].data == {"e": "FINISHED", "t": 5}
