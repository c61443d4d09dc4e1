"""The demo's settings, apart from demo.py so that `mlops demo --help` imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass

from mlops_platform.config.promote import PromoteConfig
from mlops_platform.config.train_torch import TorchTrainConfig


@dataclass(frozen=True)
class DemoConfig:
    experiment: str = "mlops-demo"
    model_name: str = "digits-classifier"
    # The jobs' own defaults (their configs are the only source): promotion ranks by a validation
    # metric, so the test split stays for the final report only.
    metric: str = PromoteConfig.model_fields["metric"].default
    alias: str = PromoteConfig.model_fields["alias"].default
    tracking_port: int = 5000
    serve_port: int = 8080
    epochs: int = TorchTrainConfig.model_fields["epochs"].default

    def train_config(self) -> TorchTrainConfig:
        """The main job's config as the demo runs it: the trainer's own defaults (dataset, splits, seed)
        with the demo's epochs, so the demo's test row comes from the split the job made."""
        return TorchTrainConfig(epochs=self.epochs)
