"""The scoring server's settings: the only place their defaults live (`mlops serve`'s options are
generated from these fields, their help from the descriptions)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
    log_max_bytes: int = Field(
        100 * 1024 * 1024,
        ge=1,
        description="The prediction log is rotated (PATH.1, PATH.2, ...) at this size.",
    )
    log_backups: int = Field(3, ge=0, description="Rotated prediction logs kept.")
    log_sample_rows: int = Field(
        0, ge=0, description="Log a random sample of this many rows of larger requests; 0 logs every row."
    )
    max_batch_size: int = Field(
        1024, ge=1, description="Most rows in one model call: larger requests are split, small ones batched."
    )
    max_wait_ms: float = Field(2.0, ge=0, description="Longest a request waits for others to join its batch.")
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Larger request bodies are refused with 413 before being read."
    )
    challenger: str | None = Field(
        None, description="A second model URI (e.g. models:/NAME@challenger) scored beside the champion."
    )
    mode: Literal["shadow", "canary"] = Field(
        "shadow",
        description="With --challenger: shadow scores a copy of every request off the response path; "
        "canary lets the challenger answer --canary-percent of requests.",
    )
    canary_percent: float = Field(5.0, ge=0, le=100, description="Percent of requests the canary answers.")
    sticky_header: str | None = Field(
        None, description="Request header whose value picks the model (one user, one model) in canary mode."
    )
    shadow_queue: int = Field(
        64, ge=1, description="Shadow copies waiting for the challenger at most; more are shed and counted."
    )
    shadow_max_busy: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Shed shadow copies while the champion had requests in flight for more than this "
        "share of the last ~0.25 s (lower: less shadow coverage, less cost to the champion).",
    )
    shadow_cpus: str | None = Field(
        None,
        description="CPUs the shadow worker may run on (e.g. 3 or 2-3,6): keep its scoring off the "
        "champion's CPUs; default: the server's own.",
    )
    guard_error_rate: float = Field(
        0.01, ge=0, le=1, description="Canary guard: stop routing above this challenger error rate..."
    )
    guard_window: int = Field(200, ge=1, description="...over its last this many requests.")
    allow_unsafe_models: bool = Field(
        False,
        description="Also load models whose format can run code when loaded (pickle, cloudpickle, "
        "python_model). Only when everyone who can log to the registry is trusted.",
    )

    @field_validator("shadow_cpus")
    @classmethod
    def _cpus_of_this_machine(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cpu_list(value)
        return value

    @model_validator(mode="after")
    def _challenger_options_need_a_challenger(self) -> ServeConfig:
        if self.challenger is None and self.sticky_header is not None:
            raise ValueError("--sticky-header needs --challenger and --mode canary")
        if self.shadow_cpus is not None and (self.challenger is None or self.mode != "shadow"):
            raise ValueError("--shadow-cpus needs --challenger and --mode shadow")
        if self.challenger is not None and self.challenger == self.model_uri:
            raise ValueError(f"--challenger {self.challenger!r} is the model already served")
        return self

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


def parse_cpu_list(text: str) -> set[int]:
    """CPU numbers from a list such as `3` or `0-1,4` (the form of taskset -c and /proc's
    Cpus_allowed_list), each one a CPU of this machine."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        if not first.isdigit() or (last and not last.isdigit()) or (last and int(last) < int(first)):
            raise ValueError(f"{text!r} is not a CPU list such as 3 or 0-1,4")
        cpus.update(range(int(first), int(last or first) + 1))
    # Any CPU of the machine, not only this process's own: a server pinned with taskset may put its
    # worker on the CPUs it leaves free. (A container's cpuset may still refuse some: the worker then
    # says so in the log and runs on the server's CPUs.)
    missing = {cpu for cpu in cpus if cpu >= (os.cpu_count() or 1)}
    if missing:
        raise ValueError(f"CPUs {sorted(missing)} do not exist here (0-{(os.cpu_count() or 1) - 1})")
    return cpus
