"""The journal file: what is appended is read back in order, acknowledged offsets persist, one owner."""

from __future__ import annotations

import math

import pytest

from mlops_platform.tracking.journal import (
    MAX_ENTRIES_PER_LINE,
    Journal,
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
