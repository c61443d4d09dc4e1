"""Pruning: a sweep with Optuna's median or hyperband pruner stops bad trials early, from the per-epoch
validation metric each torch trial reports. Real tracking server, real training (tiny MLP on wine)."""

from __future__ import annotations

import pytest

from mlops_platform.config.sweep import SweepConfig
from mlops_platform.sweep import job
from mlops_platform.sweep.storage import open_storage
from mlops_platform.sweep.study import load_study
from mlops_platform.sweep.trial import PRUNED_TAG, RUN_ID_ATTR, TRIAL_STATE_TAG

EPOCHS = 8
# lr=1e-6 barely learns in 8 epochs and lr=0.05 does: the grid holds 2 good and 2 bad trials, and the
# sampler's seed orders them good, good, bad, bad, so bad trials meet a pruner with something to compare.
SPACE = """\
lr: {type: categorical, choices: [0.05, 0.000001]}
hidden_sizes: {type: categorical, choices: ["16", "8"]}
"""
N_TRIALS = 4
TRAINER = {
    "dataset": "wine",
    "model": "mlp",
    "epochs": str(EPOCHS),
    "batch_size": "16",
    "patience": "0",
    "checkpoint_every": "0",
    "scheduler": "none",
    "optimizer": "adam",
}


@pytest.mark.slow
@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_pruner_stops_bad_trials_early(pruner, tmp_path, sqlite_tracking_uri, fresh_experiment):
    from mlflow import MlflowClient

    experiment_name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    config = SweepConfig.parse(
        {
            "trainer": "torch",
            "n_trials": N_TRIALS,
            "metric": "val_f1_macro",
            "sampler": "grid",
            "sampler_seed": 10,
            "pruner": pruner,
            "space": str(space),
            "storage": storage,
            "study": f"prune-{pruner}",
            "experiment": experiment_name,
            "trainer_params": TRAINER,
        }
    )
    result = job.run(config)

    study, _ = load_study(open_storage(storage), f"prune-{pruner}")
    trials = study.get_trials()
    states = [trial.state.name for trial in trials]
    assert len(trials) == N_TRIALS and "PRUNED" in states, states
    client = MlflowClient(sqlite_tracking_uri)
    for trial in trials:
        child = client.get_run(trial.user_attrs[RUN_ID_ATTR])
        assert child.data.tags["mlflow.parentRunId"] == result.parent_run_id
        assert child.info.status == "FINISHED"
        assert child.data.tags[TRIAL_STATE_TAG] == trial.state.name
        epochs = client.get_metric_history(child.info.run_id, "val_f1_macro")
        if trial.state.name == "PRUNED":
            # Stopped early, at the epoch Optuna last heard of, with no model.
            assert len(epochs) == max(trial.intermediate_values) < EPOCHS
            assert child.data.tags[PRUNED_TAG].startswith("pruned at epoch")
            assert not client.search_logged_models(
                [experiment_id], filter_string=f"source_run_id = '{child.info.run_id}'"
            )
            assert trial.params["lr"] == 0.000001
        else:
            assert len(epochs) == EPOCHS
    summary = result.summary
    assert summary.counts["PRUNED"] == states.count("PRUNED")
    assert summary.counts["COMPLETE"] + summary.counts["PRUNED"] + summary.counts["FAIL"] == N_TRIALS
    assert summary.best_params["lr"] == 0.05
