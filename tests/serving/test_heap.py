"""The serving process freezes its startup heap (torch, MLflow, the model) out of the garbage collector's
full passes, which walked all of it on every pass (200-266 ms stalls under load; serving/heap.py)."""

from __future__ import annotations

import gc

from mlops_platform.serving.heap import freeze_startup_heap


def test_a_real_server_reports_its_startup_heap_frozen(sklearn_server, torch_server):
    for server in (sklearn_server, torch_server):
        report = server.get("/health").json()["gc"]
        # MLflow, pandas, scikit-learn (and torch) alone are far more than this many objects.
        assert report["frozen_at_start"] > 50_000, report
        assert report["full_passes"] >= 0
        assert "froze" in server.log_text() and "startup objects" in server.log_text()


def test_freezing_moves_live_objects_out_of_the_collected_generations():
    kept = [[index] for index in range(1000)]  # container objects the collector tracks
    gc.collect()
    assert any(item is kept[0] for item in gc.get_objects(generation=2))  # a full pass walks them
    try:
        frozen = freeze_startup_heap()
        assert frozen == gc.get_freeze_count() and frozen >= len(kept)
        # A full pass now walks only what was allocated after the freeze, not these objects.
        assert not any(item is kept[0] for item in gc.get_objects(generation=2))
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
