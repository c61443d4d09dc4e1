"""Optuna's sampler, pruner and study for a sweep spec; and the trial budget as the sweep counts it."""

from __future__ import annotations

from typing import Any

from mlops_platform.sweep.space import grid
from mlops_platform.sweep.spec import SPEC_ATTR, SweepSpec

# Median: judge from the third trial on, after two epochs (tiny budgets need early judgements).
MEDIAN_STARTUP_TRIALS = 2
MEDIAN_WARMUP_EPOCHS = 2
HYPERBAND_REDUCTION = 3


def make_sampler(spec: SweepSpec, seed: int | None = None) -> Any:
    """The spec's sampler; `seed` only for the process that created the study, since workers seeded alike
    would draw the same values."""
    import optuna

    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler(grid(spec.distributions()), seed=seed)
    if spec.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise ValueError(f"sampler={spec.sampler!r} is not one of tpe, random, grid, cmaes")


def make_pruner(spec: SweepSpec) -> Any:
    import optuna

    if spec.pruner == "none":
        return optuna.pruners.NopPruner()
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=MEDIAN_WARMUP_EPOCHS
        )
    if spec.pruner == "hyperband":
        epochs = int(spec.trainer_params.get("epochs", 30))
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs, reduction_factor=HYPERBAND_REDUCTION
        )
    raise ValueError(f"pruner={spec.pruner!r} is not one of none, median, hyperband")


def create_study(storage: Any, name: str, spec: SweepSpec) -> Any:
    """A new study holding `spec`; UserError when the name is taken (join it with `mlops sweep worker`)."""
    import optuna

    from mlops_platform.errors import UserError

    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            direction="maximize" if spec.direction == "max" else "minimize",
            sampler=make_sampler(spec, spec.sampler_seed),
            pruner=make_pruner(spec),
        )
    except optuna.exceptions.DuplicatedStudyError:
        raise UserError(
            f"study {name!r} already exists; join it with `mlops sweep worker --study {name} --storage URL`"
        ) from None
    study.set_user_attr(SPEC_ATTR, spec.to_attr())
    return study


def load_study(storage: Any, name: str) -> tuple[Any, SweepSpec]:
    """The study with its own sampler and pruner, and its spec."""
    import optuna

    from mlops_platform.errors import UserError

    try:
        bare = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise UserError(f"no study named {name!r} in this storage") from None
    spec = SweepSpec.from_study(bare)
    study = optuna.load_study(
        study_name=name, storage=storage, sampler=make_sampler(spec), pruner=make_pruner(spec)
    )
    return study, spec


def superseded_numbers(trials: list[Any]) -> set[int]:
    """Numbers of failed trials that a retry replaced (Optuna records them in the retry's system attrs)."""
    return {number for trial in trials for number in trial.system_attrs.get("retry_history", [])}


def budget_trials(trials: list[Any]) -> list[Any]:
    """The trials that count against n_trials: all of them but those a retry replaced."""
    replaced = superseded_numbers(trials)
    return [trial for trial in trials if trial.number not in replaced]
