"""`mlops skew`: training-serving skew of a registered model version, from the prediction log."""

from __future__ import annotations

import sys

import click

# Exit status when --fail-on-drift finds drift (1 is an error, 2 a usage error).
DRIFT_EXIT_CODE = 3


@click.command("skew")
@click.option("--model-uri", required=True, help="models:/NAME@ALIAS or models:/NAME/VERSION.")
@click.option(
    "--log", "log_path", required=True, help="The prediction log (--log-predictions PATH; PATH.1... too)."
)
@click.option(
    "--since", default=None, help="Only requests since then: 30m, 2h, 1d, an ISO time or epoch seconds."
)
@click.option("--window", default=0, show_default=True, help="Only the last N served rows (0: every row).")
@click.option(
    "--fail-on-drift", is_flag=True, default=False, help=f"Exit {DRIFT_EXIT_CODE} when anything drifted."
)
@click.option(
    "--alpha", default=0.05, show_default=True, help="Family-wise significance (Bonferroni over features)."
)
@click.option(
    "--psi-min", default=0.1, show_default=True, help="A significant feature drifts only from this PSI on."
)
@click.option(
    "--missing-increase", default=0.1, show_default=True, help="Drift when the missing rate rises more."
)
@click.option(
    "--out-of-range-max",
    default=0.05,
    show_default=True,
    help="Drift when more values are outside the training range.",
)
@click.option("--output-dir", default=None, help="Also write skew_report.json and skew_report.html here.")
@click.option("--tracking-uri", default=None, help="Default: $MLFLOW_TRACKING_URI, else the local server.")
@click.option("--experiment", default="skew-reports", show_default=True, help="Experiment of the report run.")
@click.option(
    "--no-mlflow", is_flag=True, default=False, help="Log no run (the profile is still read from MLflow)."
)
def skew(
    model_uri: str,
    log_path: str,
    since: str | None,
    window: int,
    fail_on_drift: bool,
    alpha: float,
    psi_min: float,
    missing_increase: float,
    out_of_range_max: float,
    output_dir: str | None,
    tracking_uri: str | None,
    experiment: str,
    no_mlflow: bool,
) -> None:
    """Compare the inputs a model version served (prediction log) with the profile of its training split:
    per feature PSI and KS (numeric) or chi-squared (categorical), missing and out-of-range values, and
    the served predictions vs the validation predictions. Prints the JSON summary (drifted features
    first) and logs it, with an HTML page, as a run tagged with the model version."""
    import json
    import logging

    from mlops_platform.settings import resolve_tracking_uri
    from mlops_platform.skew.compare import DriftThresholds
    from mlops_platform.skew.job import SkewOptions, run

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    options = SkewOptions(
        model_uri=model_uri,
        log=log_path,
        since=since,
        window=window,
        thresholds=DriftThresholds(alpha, psi_min, missing_increase, out_of_range_max),
        experiment=experiment,
        output_dir=output_dir,
        log_to_mlflow=not no_mlflow,
    )
    summary = run(options, resolve_tracking_uri(tracking_uri))
    click.echo(json.dumps(summary, indent=2))
    if summary["drift"]:
        drifted = [
            *summary["drifted_features"],
            *(["prediction"] if summary.get("prediction", {}).get("drifted") else []),
        ]
        click.echo(f"drift: {', '.join(drifted)}", err=True)
        if fail_on_drift:
            sys.exit(DRIFT_EXIT_CODE)
