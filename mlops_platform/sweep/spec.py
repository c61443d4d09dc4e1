"""What a worker needs to join a study, stored in the study itself (a user attribute).

So `mlops sweep worker --study NAME --storage URL` needs nothing else: the trainer and its fixed
parameters, the metric, the search space (its contents: the file may not exist on another host), the
sampler, pruner and heartbeat settings, the parent run and its experiment all come from the study.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mlops_platform.config.sweep import SweepConfig
from mlops_platform.errors import UserError
from mlops_platform.tracking.tags import SPEC_ATTR


@dataclass(frozen=True)
class SweepSpec:
    """The sweep as every worker runs it; built once from the validated SweepConfig."""

    trainer: str
    trainer_params: dict[str, Any]
    metric: str
    direction: str  # "max" | "min"
    sampler: str
    pruner: str
    sampler_seed: int | None
    n_trials: int
    heartbeat_interval: int
    grace_period: int
    space: dict[str, dict[str, Any]]
    parent_run_id: str
    experiment_name: str
    tracking_uri: str

    @classmethod
    def from_config(
        cls, config: SweepConfig, parent_run_id: str, experiment_name: str, tracking_uri: str
    ) -> SweepSpec:
        return cls(
            trainer=config.trainer,
            trainer_params=config.fixed_trainer_params(),
            metric=config.metric,
            direction=config.direction,
            sampler=config.sampler,
            sampler_seed=config.sampler_seed,
            pruner=config.pruner,
            n_trials=config.n_trials,
            heartbeat_interval=config.heartbeat_interval,
            grace_period=config.grace_period,
            space={name: dist.model_dump() for name, dist in config.search_space().items()},
            parent_run_id=parent_run_id,
            experiment_name=experiment_name,
            tracking_uri=tracking_uri,
        )

    def to_attr(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_study(cls, study: Any) -> SweepSpec:
        raw = study.user_attrs.get(SPEC_ATTR)
        if raw is None:
            raise UserError(
                f"study {study.study_name!r} was not created by `mlops sweep run` (no {SPEC_ATTR} attribute)"
            )
        return cls(**raw)

    def distributions(self) -> dict[str, Any]:
        from mlops_platform.config.sweep_space import parse_space

        return parse_space(self.space, "stored in the study")
