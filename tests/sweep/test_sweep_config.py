"""The sweep's config: trainer parameters, metric and search space are checked before anything runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlops_platform.cli.jobs import parse_passthrough
from mlops_platform.config.base import ConfigError
from mlops_platform.config.sweep import SweepConfig
from mlops_platform.config.sweep_space import DEFAULT_SPACES, check_space, parse_space
from mlops_platform.config.train_sklearn import TrainSklearnConfig
from mlops_platform.config.train_torch import TorchTrainConfig
from mlops_platform.errors import UserError
from mlops_platform.sweep.storage import open_storage, redact


def parse(**values):
    return SweepConfig.parse(values)


def test_defaults_tune_the_default_cnn_and_fix_the_early_stopping_metric():
    config = parse()
    assert config.trainer == "torch" and config.direction == "max"
    assert set(config.search_space()) == {
        "lr",
        "batch_size",
        "dropout",
        "weight_decay",
        "optimizer",
        "channels",
    }
    assert config.fixed_trainer_params() == {"early_stopping_metric": "val_f1_macro"}
    assert parse(metric="val_loss").direction == "min"


@pytest.mark.parametrize(
    ("trainer", "model", "config_class", "fixed"),
    [
        ("torch", "mlp", TorchTrainConfig, {"dataset": "wine"}),
        ("torch", "cnn", TorchTrainConfig, {}),
        *[
            ("sklearn", model, TrainSklearnConfig, {"dataset": "diabetes" if model == "ridge" else "wine"})
            for trainer, model in DEFAULT_SPACES
            if trainer == "sklearn"
        ],
    ],
)
def test_every_default_space_gives_valid_trainer_configs(trainer, model, config_class, fixed):
    check_space(DEFAULT_SPACES[(trainer, model)], config_class, {**fixed, "model": model})


def test_trainer_params_pass_through_and_are_checked_by_the_trainer():
    config = parse(
        trainer="sklearn", metric="cv_f1_macro_mean", trainer_params={"model": "knn", "cv_folds": "3"}
    )
    assert set(config.search_space()) == {"n_neighbors", "weights"}
    with pytest.raises(ConfigError, match=r"trainer=torch parameters.*epochs="):
        parse(trainer_params={"epochs": "0"})
    with pytest.raises(ConfigError, match="nonsense"):
        parse(trainer_params={"nonsense": "1"})
    with pytest.raises(ConfigError, match="resume_from cannot be passed"):
        parse(trainer_params={"resume_from": "abc"})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"metric": "test_accuracy"}, "reports val_loss, val_accuracy, val_f1_macro"),
        ({"trainer": "sklearn", "metric": "test_f1_macro"}, "validation only"),
        ({"trainer": "sklearn", "metric": "val_f1_macro"}, "needs a validation split"),
        ({"trainer": "sklearn", "metric": "cv_f1_macro_mean", "pruner": "median"}, "use trainer=torch"),
        ({"trainer_params": {"early_stopping_metric": "val_loss"}}, "differs from metric"),
        ({"sampler": "grid"}, "sampler=grid needs categorical or int parameters; lr is log-float"),
        ({"storage": "mysql://x/y"}, "use sqlite"),
        ({"trainer_params": {"nproc_per_node": "2", "model": "mlp"}}, "instead of torchrun"),
        ({"trainer": "sklearn", "metric": "cv_f1_macro_mean", "trainer_params": {"model": "stacking"}},
         "no default search space for trainer=sklearn model='stacking'"),
    ],
)  # fmt: skip
def test_bad_sweep_values_are_named(values, message):
    with pytest.raises(ConfigError, match=message):
        parse(**values)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("width: {type: int, low: 1, high: 3}\n", "unknown parameter 'width'"),
        ("lr: {type: gaussian, mu: 0.1}\n", "does not match any of the expected tags.*'log-float'"),
        ("lr: {type: log-float, low: 0, high: 1}\n", "greater than 0"),
        ("lr: {type: float, low: 1, high: 0.1}\n", "low=1.0 must be <= high=0.1"),
        ("lr: {type: float, low: 0.1, high: 1, sigma: 2}\n", "sigma"),
        ("dropout: {type: float, low: 0.0, high: 1.0}\n", r"dropout=1.0 \(float\) is not a valid trainer"),
        ("dataset: {type: categorical, choices: [wine, digits]}\n", "fixed for every trial"),
        ("- lr\n", "must be a non-empty mapping"),
    ],
)  # fmt: skip
def test_space_files_are_validated(tmp_path, space, message):
    path = tmp_path / "space.yaml"
    path.write_text(space)
    with pytest.raises(ConfigError, match=message):
        parse(space=str(path), trainer_params={"dataset": "wine", "model": "mlp"})


def test_a_valid_space_file_replaces_the_default(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "lr: {type: log-float, low: 0.001, high: 0.1}\nepochs: {type: int, low: 2, high: 6, step: 2}\n"
    )
    config = parse(space=str(path), trainer_params={"dataset": "wine", "model": "mlp"})
    assert config.space_params() == {"space.lr": "log-float[0.001, 0.1]", "space.epochs": "int[2, 6] step 2"}
    assert parse_space({"c": {"type": "categorical", "choices": ["a", 1]}}, "x")["c"].choices == ["a", 1]


def test_passthrough_arguments_as_mlflow_run_appends_them():
    assert parse_passthrough(["--dataset", "wine", "--hidden_sizes", "8,4", "--batch-size=16"]) == {
        "dataset": "wine",
        "hidden_sizes": "8,4",
        "batch_size": "16",
    }
    with pytest.raises(ConfigError, match="has no value"):
        parse_passthrough(["--dataset"])
    with pytest.raises(ConfigError, match="unexpected argument 'wine'"):
        parse_passthrough(["wine"])


def test_storage_password_is_redacted():
    assert (
        redact("postgresql://alice:s3cret@db.example:5432/optuna")
        == "postgresql://alice:***@db.example:5432/optuna"
    )
    assert "s3cret" not in redact("postgresql+psycopg://alice:s3cret@db/optuna")


def test_an_unreachable_storage_is_a_user_error_without_the_password():
    with pytest.raises(UserError) as caught:
        open_storage("postgresql://alice:s3cret@127.0.0.1:1/optuna")
    assert "cannot open study storage postgresql://alice:***@127.0.0.1:1/optuna" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_a_bad_space_fails_on_the_command_line_before_any_study_or_run(tmp_path):
    """No tracking server is even needed: the error comes first, and no storage file is created."""
    path = tmp_path / "space.yaml"
    path.write_text("lr: {type: float, low: 0.001, high: 0.1}\nnot_a_param: {type: int, low: 1, high: 2}\n")
    home = tmp_path / "home"
    result = subprocess.run(
        [sys.executable, "-m", "mlops_platform", "sweep", "run", "--space", str(path), "--dataset", "wine",
         "--model", "mlp"],
        capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "MLOPS_HOME": str(home), "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "unknown parameter 'not_a_param'" in result.stderr
    assert not home.exists()


@pytest.mark.parametrize("sampler", ["tpe", "random", "grid", "cmaes"])
def test_every_sampler_draws_values_inside_the_space(tmp_path, sampler):
    """Optuna's samplers on the spec a study stores, drawing from the space (no training)."""
    import optuna

    from mlops_platform.sweep.space import suggest
    from mlops_platform.sweep.spec import SweepSpec
    from mlops_platform.sweep.study import make_pruner, make_sampler

    path = tmp_path / "space.yaml"
    path.write_text("lr: {type: categorical, choices: [0.01, 0.1]}\nepochs: {type: int, low: 2, high: 4}\n")
    config = parse(space=str(path), sampler=sampler, trainer_params={"dataset": "wine", "model": "mlp"})
    spec = SweepSpec.from_config(config, "parent", "experiment", "http://127.0.0.1:9")
    study = optuna.create_study(
        direction="maximize", sampler=make_sampler(spec, seed=0), pruner=make_pruner(spec)
    )
    space = spec.distributions()
    drawn = []

    def objective(trial):
        values = suggest(trial, space)
        drawn.append(values)
        return values["lr"] * values["epochs"]

    study.optimize(objective, n_trials=4)
    assert len(drawn) >= 1 and all(v["lr"] in (0.01, 0.1) and 2 <= v["epochs"] <= 4 for v in drawn)
