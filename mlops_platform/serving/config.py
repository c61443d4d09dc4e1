"""The scoring server's settings: the only place their defaults live (`mlops serve`'s options are
generated from these fields, their help from the descriptions)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_platform.errors import UserError


class ServeConfig(BaseModel):
    """How `mlops serve` runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_uri: str = Field(
        description="What to serve: models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model."
    )
    tracking_uri: str | None = Field(
        None, description="Tracking server / registry; default $MLFLOW_TRACKING_URI, else the local server."
    )
    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 only to expose it.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port.")
    workers: int = Field(1, ge=1, description="uvicorn worker processes, each with its own model copy.")
    reload_interval: float = Field(
        0.0, ge=0, description="Seconds between checks of the aliases served (moves are followed); 0: off."
    )
    log_predictions: str | None = Field(
        None, description="Append served inputs and outputs to this JSON-lines file (mode 0600)."
    )
    max_batch_size: int = Field(
        1024, ge=1, description="Most rows in one model call: larger requests are split, small ones batched."
    )
    max_wait_ms: float = Field(2.0, ge=0, description="Longest a request waits for others to join its batch.")
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Larger request bodies are refused with 413 before being read."
    )
    allow_unsafe_models: bool = Field(
        False,
        description="Also load models whose format can run code when loaded (pickle, cloudpickle, "
        "python_model). Only when everyone who can log to the registry is trusted.",
    )

    @classmethod
    def parse(cls, values: dict) -> ServeConfig:
        """Validate raw values into a config; raises UserError naming each bad value."""
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            from mlops_platform.config.base import describe_validation_error

            raise UserError(describe_validation_error(error)) from None

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        return cls.model_validate_json(text)
