"""The demo's settings, apart from demo.py so that `mlops demo --help` imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoConfig:
    experiment: str = "mlops-demo"
    model_name: str = "digits-classifier"
    # Promotion ranks by a validation metric: the test split stays for the final report only.
    metric: str = "val_f1_macro"
    tracking_port: int = 5000
    serve_port: int = 8080
    epochs: int = 30
