"""The scoring server's settings: the only place their defaults live (the CLI reads them from here)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ServeConfig:
    """How `mlops serve` runs.

    Attributes:
        model_uri: what to serve: ``models:/digits@champion``, ``models:/digits/3``, ``runs:/<id>/model``.
        tracking_uri: the tracking server / registry; None -> settings.resolve_tracking_uri().
        host: interface to bind; loopback unless you mean to expose it.
        port: TCP port.
        workers: uvicorn worker processes, each with its own copy of the model.
        reload_interval: seconds between checks of the alias in ``model_uri``; 0 turns following off.
        log_predictions: a JSON-lines file that served inputs and outputs are appended to; None: off.
        max_batch_size: most rows one model call takes when concurrent requests are micro-batched.
        max_wait_ms: longest a request waits for others to share its batch.
        max_body_bytes: larger request bodies are refused with 413 before they are read whole.
    """

    model_uri: str
    tracking_uri: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    reload_interval: float = 0.0
    log_predictions: str | None = None
    max_batch_size: int = 1024
    max_wait_ms: float = 2.0
    max_body_bytes: int = 10 * 1024 * 1024

    def __post_init__(self) -> None:
        checks = {
            "workers": self.workers >= 1,
            "reload_interval": self.reload_interval >= 0,
            "max_batch_size": self.max_batch_size >= 1,
            "max_wait_ms": self.max_wait_ms >= 0,
            "max_body_bytes": self.max_body_bytes >= 1,
            "port": 0 <= self.port <= 65535,
        }
        for name, ok in checks.items():
            if not ok:
                from mlops_platform.errors import UserError

                raise UserError(f"invalid {name}={getattr(self, name)!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        return cls(**json.loads(text))
