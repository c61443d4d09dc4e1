"""Hyperparameter sweeps on Optuna: one MLflow parent run per sweep, one child run per trial.

- `space`: Optuna distributions and sampling from the config's search space.
- `storage`: the study storage (SQLite under MLOPS_HOME, or PostgreSQL for several hosts), Optuna's
  heartbeat and retry of stale trials, and the lock that keeps the trial budget exact.
- `spec`: what a worker needs to join a study, stored in the study itself.
- `trial`: one trial = one run of the trainer's own job, nested under the parent run.
- `worker`: the loop every process runs: claim a trial within the budget, run it, report it.
- `summary`: counts, best trial, Optuna's figures on the parent run; `mlops sweep status`.
- `job`: the `sweep` entry point (`mlflow run . -e sweep`, `mlops sweep run`) and `mlops sweep worker`.
"""
