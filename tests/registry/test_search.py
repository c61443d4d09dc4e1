"""search_runs / runs_frame against the real servers (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from mlops_platform.registry import RunRecord, SearchError, runs_frame, search_runs


def test_finished_only_by_default_and_every_page_followed(population) -> None:
    finished = search_runs(population.experiment_name, tracking_uri=population.tracking_uri, page_size=7)
    assert all(isinstance(record, RunRecord) for record in finished)
    assert {r.status for r in finished} == {"FINISHED"}
    # 30 runs, 3 FAILED: 27 FINISHED across 4 pages of 7.
    assert len(finished) == 27
    assert not set(population.failed) & {r.run_id for r in finished}

    everything = search_runs(
        population.experiment_id, status="ANY", tracking_uri=population.tracking_uri, page_size=4
    )
    assert len(everything) == 30
    assert len({r.run_id for r in everything}) == 30

    failed = search_runs(population.experiment_id, status="FAILED", tracking_uri=population.tracking_uri)
    assert sorted(r.run_id for r in failed) == sorted(population.failed)


def test_max_results_and_order(population) -> None:
    top = search_runs(
        population.experiment_name,
        order_by=["metrics.val_acc DESC"],
        max_results=5,
        tracking_uri=population.tracking_uri,
        page_size=2,
    )
    # The no-model runs (0.95) rank first: search_runs is a plain search, it does not require a model.
    assert [r.metrics["val_acc"] for r in top] == [0.95, 0.95, 0.95, 0.69, 0.68]
    assert top[3].run_id == population.ranked[0]
    assert top[3].model_ids and top[3].params["model"] == "lr" and top[3].tags["team"] == "b"


def test_filters_on_params_tags_and_metrics(population) -> None:
    def ids(filter_string: str) -> set[str]:
        return {
            r.run_id
            for r in search_runs(
                population.experiment_name, filter_string, tracking_uri=population.tracking_uri
            )
        }

    lr = ids("params.model = 'lr'")
    assert lr == {run for run in population.ranked if round(population.values[run] * 100) % 2 == 1}
    team_a = ids("tags.team = 'a'")
    assert team_a == {run for run in population.ranked if population.values[run] < 0.60}
    high = ids("metrics.val_acc >= 0.65 and tags.team = 'b'")
    assert high == {run for run in population.ranked if population.values[run] >= 0.65}
    assert ids("params.model = 'lr' and metrics.val_acc > 0.67") == {population.ranked[0]}


def test_runs_frame_has_columns(population) -> None:
    frame = runs_frame(
        population.experiment_name,
        "tags.team = 'b'",
        order_by=["metrics.val_acc ASC"],
        tracking_uri=population.tracking_uri,
    )
    assert len(frame) == 10
    assert {"run_id", "status", "metrics.val_acc", "params.model", "tags.team", "start_time"} <= set(
        frame.columns
    )
    assert list(frame["metrics.val_acc"]) == sorted(frame["metrics.val_acc"])
    assert str(frame["start_time"].dtype).startswith("datetime64")
    empty = runs_frame(
        population.experiment_name, "tags.team = 'nobody'", tracking_uri=population.tracking_uri
    )
    assert empty.empty and "run_id" in empty.columns


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"filter_string": "metrics.val_acc >>> 1"}, "metrics.val_acc >>> 1"),
        ({"filter_string": "params.model = lr"}, "params.model = lr"),
        ({"status": "DONE"}, "DONE"),
        ({"order_by": ["metrics.val_acc SIDEWAYS"]}, "SIDEWAYS"),
    ],
)
def test_bad_input_is_a_user_error_naming_it(population, kwargs, named) -> None:
    with pytest.raises(SearchError) as caught:
        search_runs(population.experiment_name, tracking_uri=population.tracking_uri, **kwargs)
    assert named in str(caught.value)


def test_unknown_experiment(population) -> None:
    with pytest.raises(SearchError, match="unknown experiment 'no-such-experiment'"):
        search_runs("no-such-experiment", tracking_uri=population.tracking_uri)
    with pytest.raises(SearchError, match="unknown experiment '987654'"):
        search_runs("987654", tracking_uri=population.tracking_uri)
