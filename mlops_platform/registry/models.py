"""Registered models as `mlops registry list|show` prints them: every model (all pages), one model's versions.

The commands in cli/registry.py only format what these return.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops_platform.registry.promote import RegistryError, check_model_name, get_aliases

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import RegisteredModel

# The registry's own page limit for search_registered_models.
MODELS_PAGE_SIZE = 100


def iter_registered_models(
    client: MlflowClient, page_size: int = MODELS_PAGE_SIZE
) -> Iterator[RegisteredModel]:
    """Every registered model, page by page, following page tokens until the server has no more."""
    token = None
    while True:
        page = client.search_registered_models(max_results=page_size, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def latest_version(model: RegisteredModel) -> int | None:
    return max((int(v.version) for v in model.latest_versions or []), default=None)


@dataclass(frozen=True)
class ModelDescription:
    """A registered model's aliases and its versions (lowest first), each with its aliases and tags."""

    name: str
    aliases: dict[str, str]  # alias -> version
    versions: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "aliases": self.aliases, "versions": self.versions}


def describe_model(client: MlflowClient, model_name: str) -> ModelDescription:
    """The versions of `model_name`: aliases, source run, status, tags. Unknown model: RegistryError."""
    check_model_name(model_name)
    aliases = get_aliases(client, model_name)
    if aliases is None:
        raise RegistryError(f"unknown registered model {model_name!r}")
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(version, []).append(alias)
    versions = sorted(client.search_model_versions(f"name = '{model_name}'"), key=lambda v: int(v.version))
    rows = [
        {
            "version": v.version,
            "aliases": sorted(by_version.get(v.version, [])),
            "run_id": v.run_id,
            "source": v.source,
            "status": v.status,
            "tags": dict(v.tags or {}),
        }
        for v in versions
    ]
    return ModelDescription(model_name, aliases, rows)
