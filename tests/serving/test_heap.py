"""The serving process freezes its startup heap (torch, MLflow, the model) out of the garbage collector's
full passes, which walked all of it on every pass (200-266 ms stalls under load; serving/heap.py)."""

from __future__ import annotations

import gc

from mlops_platform.serving.heap import CollectorClock, freeze_startup_heap


def test_a_real_server_reports_its_startup_heap_frozen(sklearn_server, torch_server):
    for server in (sklearn_server, torch_server):
        report = server.get("/health").json()["gc"]
        # MLflow, pandas, scikit-learn (and torch) alone are far more than this many objects.
        assert report["frozen_at_start"] > 50_000, report
        assert report["full_passes"] >= 0
        # The collector's own time per generation, counted since the models were loaded.
        assert len(report["passes_by_generation"]) == len(report["seconds_by_generation"]) == 3
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


def test_the_collector_clock_times_each_generation_and_stops_counting_when_stopped():
    clock = CollectorClock()
    clock.start()
    try:
        clock.start()  # idempotent: one callback, so one count per pass
        garbage = [[index] for index in range(200_000)]  # a full pass has these to walk
        del garbage
        gc.collect(0)
        gc.collect(2)
    finally:
        clock.stop()
    report = clock.report()
    assert report["passes_by_generation"][0] >= 1 and report["passes_by_generation"][2] >= 1, report
    assert report["seconds_by_generation"][2] > 0, report
    gc.collect(2)
    assert clock.report() == report  # stopped: no callback left behind
