"""What a sweep ended with: trials by state, the best trial, Optuna's figures; on the parent run and as
`mlops sweep status` prints it."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

from mlops_platform.sweep.spec import SweepSpec
from mlops_platform.sweep.study import budget_trials
from mlops_platform.sweep.trial import RUN_ID_ATTR
from mlops_platform.tracking.interface import Run
from mlops_platform.tracking.tags import BEST_RUN_TAG

log = logging.getLogger(__name__)
STATES: tuple[str, ...] = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


@dataclass(frozen=True)
class SweepSummary:
    study: str
    n_trials: int
    counts: dict[str, int]  # over the budget's trials (a retried trial counts once, as its retry)
    retried: int  # trials failed by the heartbeat and run again
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_run_id: str | None = None

    def text(self, metric: str, parent_link: str | None = None) -> str:
        counts = ", ".join(f"{state.lower()} {self.counts.get(state, 0)}" for state in STATES)
        lines = [f"study {self.study}: {counts} (budget {self.n_trials}; {self.retried} retried)"]
        if self.best_number is not None:
            lines.append(
                f"best: trial {self.best_number} {metric}={self.best_value:.6g} run {self.best_run_id} "
                f"params {self.best_params}"
            )
        else:
            lines.append("best: no complete trial yet")
        if parent_link:
            lines.append(f"parent run: {parent_link}")
        return "\n".join(lines)


def summarize(study: Any, spec: SweepSpec) -> SweepSummary:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counted = budget_trials(trials)
    counts = {state: sum(trial.state.name == state for trial in counted) for state in STATES}
    complete = [trial for trial in counted if trial.state == TrialState.COMPLETE]
    summary = SweepSummary(study.study_name, spec.n_trials, counts, len(trials) - len(counted))
    if not complete:
        return summary
    best = study.best_trial
    return SweepSummary(
        summary.study,
        summary.n_trials,
        counts,
        summary.retried,
        best.number,
        float(best.value),
        dict(best.params),
        best.user_attrs.get(RUN_ID_ATTR),
    )


def parent_run_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def log_summary(run: Run, study: Any, spec: SweepSpec, summary: SweepSummary, tracking_uri: str) -> None:
    """Counts, best value and params, the best child's test metrics, and Optuna's figures."""
    from mlflow import MlflowClient

    metrics = {f"trials_{state.lower()}": float(count) for state, count in summary.counts.items()}
    metrics["trials_retried"] = float(summary.retried)
    if summary.best_value is not None:
        metrics[f"best_{spec.metric}"] = summary.best_value
        metrics["best_trial"] = float(summary.best_number)
        run.log_params({f"best.{name}": value for name, value in summary.best_params.items()})
    if summary.best_run_id:
        run.set_tags({BEST_RUN_TAG: summary.best_run_id})
        # Selection was on validation only; the test figure is what the best child itself reported.
        child = MlflowClient(tracking_uri).get_run(summary.best_run_id)
        metrics.update(
            {f"best_{name}": value for name, value in child.data.metrics.items() if name.startswith("test_")}
        )
    run.log_metrics(metrics)
    log_figures(run, study)


def log_figures(run: Run, study: Any) -> None:
    """Optuna's optimization history, parallel coordinates and param importances (matplotlib).

    A figure Optuna cannot draw for this study (importances need two complete trials with differing
    values) is left out with a warning that says why.
    """
    import matplotlib

    matplotlib.use("Agg")  # a headless job: never try to open a window
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    figures = {
        "sweep/optimization_history.png": optuna_plots.plot_optimization_history,
        "sweep/parallel_coordinate.png": optuna_plots.plot_parallel_coordinate,
        "sweep/param_importances.png": optuna_plots.plot_param_importances,
    }
    for path, plot in figures.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                axes = plot(study)
            except (ValueError, RuntimeError) as error:
                log.warning("sweep: %s not drawn: %s", path, error)
                continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        run.log_figure(figure, path, bbox_inches="tight")
        plt.close(figure)
