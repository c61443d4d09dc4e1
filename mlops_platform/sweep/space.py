"""The config's search space in Optuna's terms: suggesting a trial's values, and grids for GridSampler."""

from __future__ import annotations

from typing import Any

from mlops_platform.config.sweep_space import CategoricalParam, FloatParam, IntParam, LogFloatParam


def suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """The trial's value for each parameter of the space (a retried trial gets its original values)."""
    values: dict[str, Any] = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalParam):
            values[name] = trial.suggest_categorical(name, dist.choices)
        elif isinstance(dist, IntParam):
            values[name] = trial.suggest_int(name, dist.low, dist.high, step=dist.step)
        elif isinstance(dist, LogFloatParam):
            values[name] = trial.suggest_float(name, dist.low, dist.high, log=True)
        elif isinstance(dist, FloatParam):
            values[name] = trial.suggest_float(name, dist.low, dist.high, step=dist.step)
        else:
            raise TypeError(f"unknown distribution {dist!r} for {name}")
    return values


def grid(space: dict[str, Any]) -> dict[str, list[Any]]:
    """GridSampler's search space: every choice, every int in range (the config allows nothing else)."""
    cells: dict[str, list[Any]] = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalParam):
            cells[name] = list(dist.choices)
        else:
            cells[name] = list(range(dist.low, dist.high + 1, dist.step))
    return cells
