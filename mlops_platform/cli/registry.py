"""`mlops registry list|show|rollback` and `mlops runs search`: thin wrappers over mlops_platform.registry.

Heavy imports (mlflow, pandas) happen inside the commands, so `mlops --help` stays fast.
"""

from __future__ import annotations

import json

import click

from mlops_platform.config.promote import PromoteConfig

_TRACKING_URI = click.option(
    "--tracking-uri",
    default=None,
    help="Tracking server URL; default: MLFLOW_TRACKING_URI or the local server.",
)


# ------------------------------------------------------------------------------------------ runs search


@click.command("search")
@click.option(
    "--experiment", "-e", "experiments", multiple=True, required=True, help="Name or id (repeatable)."
)
@click.option("--filter", "filter_string", default="", help='MLflow filter, e.g. "metrics.val_acc > 0.9".')
@click.option("--order-by", multiple=True, help='e.g. "metrics.val_f1_macro DESC" (repeatable).')
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N runs (default: all).")
@click.option("--status", default="FINISHED", show_default=True, help="Run status, or ANY.")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "csv"]), default="table")
@_TRACKING_URI
def search_command(
    experiments: tuple[str, ...],
    filter_string: str,
    order_by: tuple[str, ...],
    limit: int | None,
    status: str,
    output_format: str,
    tracking_uri: str | None,
) -> None:
    """Search runs across every page (FINISHED only unless --status says otherwise)."""
    from dataclasses import asdict

    from mlops_platform.registry.search import search_runs

    records = search_runs(
        list(experiments), filter_string, list(order_by), limit, status, tracking_uri=tracking_uri
    )
    if output_format == "json":
        click.echo(json.dumps([asdict(record) for record in records], indent=2))
        return
    import pandas as pd

    frame = pd.DataFrame([record.as_row() for record in records])
    if output_format == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
        return
    if frame.empty:
        click.echo("no runs match")
        return
    shown = ["run_id", "run_name", "status"] + [
        c for c in frame.columns if c.startswith(("metrics.", "params."))
    ]
    click.echo(frame[shown].to_string(index=False))
    click.echo(f"{len(frame)} run(s)")


# ------------------------------------------------------------------------------------------ registry


def _alias_text(aliases: dict[str, str]) -> str:
    return ", ".join(f"@{alias}=v{version}" for alias, version in sorted(aliases.items()))


@click.group()
def registry() -> None:
    """Registered models: list, show, roll back. Promote with `mlops promote`."""


@registry.command("list")
@_TRACKING_URI
def list_command(tracking_uri: str | None) -> None:
    """Every registered model with its aliases."""
    from mlops_platform.registry.models import iter_registered_models, latest_version
    from mlops_platform.registry.search import client_for

    count = 0
    for model in iter_registered_models(client_for(tracking_uri)):
        aliases = _alias_text(model.aliases or {}) or "-"
        click.echo(f"{model.name}\tlatest v{latest_version(model)}\t{aliases}")
        count += 1
    if not count:
        click.echo("no registered models")


@registry.command("show")
@click.argument("model_name")
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table")
@_TRACKING_URI
def show_command(model_name: str, output_format: str, tracking_uri: str | None) -> None:
    """The versions of MODEL_NAME: aliases, source run, promotion tags."""
    from mlops_platform.registry.models import describe_model
    from mlops_platform.registry.search import client_for
    from mlops_platform.tracking.tags import TAG_METRIC, TAG_VALUE

    described = describe_model(client_for(tracking_uri), model_name)
    if output_format == "json":
        click.echo(json.dumps(described.to_dict(), indent=2))
        return
    click.echo(f"{model_name}: {_alias_text(described.aliases) or 'no aliases'}")
    for row in described.versions:
        tags = row["tags"]
        metric = f"{tags[TAG_METRIC]}={tags.get(TAG_VALUE)}" if TAG_METRIC in tags else ""
        alias_text = " ".join(f"@{a}" for a in row["aliases"])
        click.echo(f"  v{row['version']}\t{alias_text or '-'}\trun {row['run_id']}\t{metric}")


@registry.command("rollback")
@click.argument("model_name")
@click.option(
    "--alias",
    default=PromoteConfig.model_fields["alias"].default,
    show_default=True,
    help="The alias to move back.",
)
@click.option(
    "--lock-uri",
    default=None,
    help="PostgreSQL URI for the cross-machine advisory lock (default: $MLOPS_LOCK_URI).",
)
@_TRACKING_URI
def rollback_command(model_name: str, alias: str, lock_uri: str | None, tracking_uri: str | None) -> None:
    """Move ALIAS of MODEL_NAME back to the version @previous points at."""
    from mlops_platform.registry.promote import rollback

    click.echo(rollback(model_name, alias, tracking_uri=tracking_uri, lock_uri=lock_uri).summary())
