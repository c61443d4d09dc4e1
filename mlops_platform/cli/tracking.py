"""`mlops sync` (deliver journals dead processes left behind) and `mlops runs reap` (end dead runs)."""

from __future__ import annotations

import click

from mlops_platform.errors import UserError


@click.command()
@click.option(
    "--tracking-uri",
    default=None,
    help="Deliver to this server instead of the one each journal recorded (your credentials go there).",
)
@click.option("--attempts", default=3, show_default=True, help="Tries per journal while the server is away.")
@click.option(
    "--status", "show_status", is_flag=True, help="Only list waiting, rejected and quarantined journals."
)
@click.option(
    "--clean", is_flag=True, help="Delete the rejected records and quarantined journals (after --status)."
)
def sync(tracking_uri: str | None, attempts: int, show_status: bool, clean: bool) -> None:
    """Replay the run journals under $MLOPS_HOME that no live process owns.

    Records are sent with their original timestamps; what the server already acknowledged is not sent
    again, and a re-sent record is stored once. Delivered journals are deleted; one that cannot be
    delivered at all is moved to $MLOPS_HOME/quarantine and reported.
    """
    if show_status and clean:
        raise click.UsageError("--status and --clean do different things; give one")
    if show_status:
        _print_status()
        return
    if clean:
        _clean()
        return
    from mlops_platform.tracking.replay import sync_journals

    results = sync_journals(tracking_uri=tracking_uri, attempts=attempts)
    if not results:
        click.echo("nothing to sync")
        return
    pending = quarantined = 0
    for result in results:
        counts = result.counts
        line = (
            f"{result.run_id}: {result.state} ({counts.metrics} metrics, {counts.params} params, "
            f"{counts.tags} tags sent"
        )
        if counts.ended:
            line += f", run ended {counts.ended}"
        if counts.rejected:
            line += f", {counts.rejected} refused by the server (see {result.rejected_path})"
        line += ")"
        if result.state == "pending":
            pending += 1
            line += f": {result.error or 'not fully delivered'}; kept in {result.path}"
        elif result.state == "quarantined":
            quarantined += 1
            line += f": {result.error}; moved to {result.path}"
        click.echo(line)
    problems = []
    if pending:
        problems.append(f"{pending} journal(s) not delivered; run `mlops sync` again later")
    if quarantined:
        problems.append(
            f"{quarantined} journal(s) cannot be delivered and were quarantined; "
            "see `mlops sync --status`, remove with `mlops sync --clean`"
        )
    if problems:
        raise click.ClickException("; ".join(problems))


def _print_status() -> None:
    from mlops_platform.tracking.housekeeping import leftovers, waiting_journals

    waiting = waiting_journals()
    found = leftovers()
    for journal in waiting:
        click.echo(
            f"journal {journal.run_id}: {journal.state}, "
            f"{journal.pending_bytes} bytes to deliver ({journal.path})"
        )
    for leftover in found:
        click.echo(f"{leftover.kind} {leftover.path}: {leftover.detail}")
    click.echo(
        f"{len(waiting)} journal(s) waiting, "
        f"{sum(f.kind == 'rejected' for f in found)} rejected file(s), "
        f"{sum(f.kind == 'quarantined' for f in found)} quarantined journal(s)"
    )


def _clean() -> None:
    from mlops_platform.tracking.housekeeping import clean_leftovers

    removed = clean_leftovers()
    for leftover in removed:
        click.echo(f"removed {leftover.kind} {leftover.path}")
    click.echo(f"{len(removed)} rejected file(s) and quarantined journal(s) removed")


@click.command()
@click.option(
    "--stale-after",
    default="10m",
    show_default=True,
    help="A RUNNING run whose heartbeat is older than this (e.g. 90s, 10m, 2h), on the tracking server's "
    "clock, is marked KILLED; a run whose recorded heartbeat interval is longer gets 3 of its intervals.",
)
@click.option(
    "--experiment", "experiments", multiple=True, help="Only this experiment (name or id; repeatable)."
)
@click.option("--dry-run", is_flag=True, help="List the runs that would be marked, change nothing.")
@click.option("--tracking-uri", default=None, help="Default: MLFLOW_TRACKING_URI or the local server.")
def reap(stale_after: str, experiments: tuple[str, ...], dry_run: bool, tracking_uri: str | None) -> None:
    """Mark RUNNING runs whose process died (heartbeat stopped) as KILLED."""
    from mlflow import MlflowClient

    from mlops_platform.registry.search import resolve_experiment_ids
    from mlops_platform.settings import resolve_tracking_uri
    from mlops_platform.tracking.reaper import parse_duration, reap_stale_runs

    try:
        seconds = parse_duration(stale_after)
    except UserError as error:
        raise click.BadParameter(str(error), param_hint="--stale-after") from None
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    # An unknown experiment is a SearchError, reported by the CLI's one boundary like `runs search`'s.
    experiment_ids = resolve_experiment_ids(client, experiments) if experiments else None
    reaped = reap_stale_runs(client, seconds, experiment_ids, dry_run=dry_run)
    verb = "would mark" if dry_run else "marked"
    for run in reaped:
        click.echo(f"{verb} KILLED: {run.run_id} ({run.run_name}) in experiment {run.experiment_id}")
    click.echo(f"{len(reaped)} stale run(s) {verb} KILLED")
