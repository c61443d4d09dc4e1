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


@click.group()
def registry() -> None:
    """Registered models: list, show, roll back. Promote with `mlops promote`."""


@registry.command("list")
@_TRACKING_URI
def list_command(tracking_uri: str | None) -> None:
    """Every registered model with its aliases."""
    from mlops_platform.registry.search import client_for

    client = client_for(tracking_uri)
    token, count = None, 0
    while True:
        page = client.search_registered_models(max_results=100, page_token=token)
        for model in page:
            aliases = ", ".join(f"@{a}=v{v}" for a, v in sorted((model.aliases or {}).items())) or "-"
            latest = max((int(v.version) for v in model.latest_versions or []), default=None)
            click.echo(f"{model.name}\tlatest v{latest}\t{aliases}")
            count += 1
        token = page.token
        if not token:
            break
    if not count:
        click.echo("no registered models")


@registry.command("show")
@click.argument("model_name")
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table")
@_TRACKING_URI
def show_command(model_name: str, output_format: str, tracking_uri: str | None) -> None:
    """The versions of MODEL_NAME: aliases, source run, promotion tags."""
    from mlops_platform.registry.promote import RegistryError, check_model_name, get_aliases
    from mlops_platform.registry.search import client_for

    check_model_name(model_name)
    client = client_for(tracking_uri)
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
    if output_format == "json":
        click.echo(json.dumps({"name": model_name, "aliases": aliases, "versions": rows}, indent=2))
        return
    click.echo(
        f"{model_name}: " + (", ".join(f"@{a}=v{v}" for a, v in sorted(aliases.items())) or "no aliases")
    )
    for row in rows:
        tags = row["tags"]
        from mlops_platform.tracking.tags import TAG_METRIC, TAG_VALUE

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
