"""find_best_run: FINISHED only, skips runs without the metric or a model, both directions."""

from __future__ import annotations

import pytest

from mlops_platform.registry import NoQualifyingRunError, SearchError, find_best_run


def test_best_skips_failed_no_model_no_metric_and_nan(population) -> None:
    # page_size=2: the three no-model runs at the top fill more than a page, so skipping crosses pages.
    best = find_best_run(
        population.experiment_name, "val_acc", "max", tracking_uri=population.tracking_uri, page_size=2
    )
    assert best.run_id == population.ranked[0]
    assert best.value == 0.69
    assert best.model_uri.startswith("models:/m-")
    never = (
        set(population.failed)
        | set(population.no_model)
        | set(population.no_metric)
        | {population.nan_metric}
    )
    assert best.run_id not in never


def test_mode_min(population) -> None:
    best = find_best_run(population.experiment_id, "val_loss", "min", tracking_uri=population.tracking_uri)
    assert best.run_id == population.ranked[0]
    assert best.value == pytest.approx(0.31)
    worst = find_best_run(population.experiment_id, "val_acc", "min", tracking_uri=population.tracking_uri)
    assert worst.run_id == population.ranked[-1]


def test_filter_narrows_candidates(population) -> None:
    best = find_best_run(
        population.experiment_name, "val_acc", "max", "tags.team = 'a' and params.model = 'tree'",
        tracking_uri=population.tracking_uri,
    )  # fmt: skip
    assert best.value == 0.58


def test_nothing_qualifies_names_the_metric(population) -> None:
    with pytest.raises(NoQualifyingRunError, match=r"no run in experiment .* has metric 'nonexistent'"):
        find_best_run(population.experiment_name, "nonexistent", "max", tracking_uri=population.tracking_uri)
    with pytest.raises(NoQualifyingRunError, match="have no READY logged model"):
        find_best_run(
            population.experiment_name,
            "val_acc",
            "max",
            "metrics.val_acc > 0.9",
            tracking_uri=population.tracking_uri,
        )


def test_mode_is_required_for_unknown_metrics(population) -> None:
    with pytest.raises(SearchError, match="pass mode"):
        find_best_run(population.experiment_name, "some_custom_score", tracking_uri=population.tracking_uri)
    with pytest.raises(SearchError, match="invalid mode 'up'"):
        find_best_run(population.experiment_name, "val_acc", "up", tracking_uri=population.tracking_uri)


def test_top_runs_ranks_finished_runs_with_the_metric(population) -> None:
    from mlops_platform.registry import top_runs

    top = top_runs(population.experiment_name, "val_acc", 4, "max", tracking_uri=population.tracking_uri)
    # The model-less runs (0.95) count here (a ranking, not a promotion); FAILED (0.99), NaN and
    # metric-less runs never do.
    assert [r.metric("val_acc") for r in top] == [0.95, 0.95, 0.95, 0.69]
    assert {r.run_id for r in top[:3]} == set(population.no_model)
    lr = top_runs(
        population.experiment_id, "val_acc", 3, "max", "params.model = 'lr'",
        tracking_uri=population.tracking_uri,
    )  # fmt: skip
    assert [r.metric("val_acc") for r in lr] == [0.69, 0.67, 0.65]
    assert [r.run_id for r in lr] == population.ranked[0:6:2]
    with pytest.raises(SearchError, match="invalid limit=0"):
        top_runs(population.experiment_id, "val_acc", 0, "max", tracking_uri=population.tracking_uri)


def test_few_ranked_ranks_like_the_server(population) -> None:
    """promote_best ranks the runs that reach its champion itself (one page, ordered by start time);
    its order must be the server's, ties (the three 0.95 runs) and both directions included."""
    from mlflow import MlflowClient

    from mlops_platform.registry.best import LOWEST_FLOAT, few_ranked, iter_ranked

    client = MlflowClient(population.tracking_uri)
    ids = [population.experiment_id]
    for metric, mode in (("val_acc", "max"), ("val_acc", "min"), ("val_loss", "min")):
        everything = f"metrics.`{metric}` >= {LOWEST_FLOAT}"
        ours = few_ranked(client, ids, metric, mode, everything)
        server = list(iter_ranked(client, ids, metric, mode, page_size=7))
        assert [r.run_id for r in ours] == [r.run_id for r in server]
        assert population.nan_metric not in {r.run_id for r in ours}
        assert not set(population.failed) & {r.run_id for r in ours}
    reaching = few_ranked(client, ids, "val_acc", "max", "metrics.val_acc >= 0.68")
    assert [r.metric("val_acc") for r in reaching] == [0.95, 0.95, 0.95, 0.69, 0.68]
    # More runs than one page: None, and the caller falls back to the ranked search.
    assert few_ranked(client, ids, "val_acc", "max", f"metrics.val_acc >= {LOWEST_FLOAT}", limit=5) is None
