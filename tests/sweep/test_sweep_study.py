"""The study's storage (its password never shown) and Optuna's samplers on the spec a study stores."""

from __future__ import annotations

import pytest

from mlops_platform.config.sweep import SweepConfig
from mlops_platform.errors import UserError
from mlops_platform.sweep.storage import open_storage, redact


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


@pytest.mark.parametrize("sampler", ["tpe", "random", "grid", "cmaes"])
def test_every_sampler_draws_values_inside_the_space(tmp_path, sampler):
    """Optuna's samplers on the spec a study stores, drawing from the space (no training)."""
    import optuna

    from mlops_platform.sweep.space import suggest
    from mlops_platform.sweep.spec import SweepSpec
    from mlops_platform.sweep.study import make_pruner, make_sampler

    path = tmp_path / "space.yaml"
    path.write_text("lr: {type: categorical, choices: [0.01, 0.1]}\nepochs: {type: int, low: 2, high: 4}\n")
    config = SweepConfig.parse(
        {"space": str(path), "sampler": sampler, "trainer_params": {"dataset": "wine", "model": "mlp"}}
    )
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
