"""Skew benchmark: `mlops skew`'s analysis of 100,000 logged rows, against the plain way, same data.

    .venv/bin/python benchmarks/skew.py [--rows 100000] [--rows-per-request 1,100]

The profile is the one the sklearn trainer stores with a digits model (the job run in memory, with
the recording tracker: no server needed for the analysis). The log is written by the server's own
writer (PredictionLog, rotated at 16 MiB so the rotated files are read too) with `--rows` digits rows
resampled, one feature shifted by half a standard deviation; one log per request size (1 row a
request: 100,000 lines; 100 rows a request: 1,000 lines).

Timed (best of 3; wall seconds, and the CPU seconds of this single-threaded process, which is what
the wall time comes to on an idle machine): ours = read the version's rows from the log (all files) +
compare every feature and the predictions with the profile + render the HTML, what `mlops skew` does
between fetching the profile and logging the run. The plain way = `pandas.read_json(lines=True)` on
the log files, then `scipy.stats.ks_2samp` of each feature against the training split itself (the
data the report would otherwise need to keep).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import orjson
import pandas as pd


def trained_profile() -> tuple[dict, pd.DataFrame]:
    from mlops_platform.config.train_sklearn import TrainSklearnConfig
    from mlops_platform.data import load_dataset, split_dataset
    from mlops_platform.tracking import RecordingTracker
    from mlops_platform.training import sklearn_job

    config = TrainSklearnConfig.parse({"dataset": "digits", "model": "knn", "cv_folds": 2, "baseline": False})
    tracker = RecordingTracker()
    sklearn_job.run(config, tracker=tracker)
    train = split_dataset(
        load_dataset("digits"), config.seed, config.val_fraction, config.test_fraction
    ).train
    return tracker.last_run.models[0].files["skew_profile.json"], train.features


def write_log(path: str, rows: int, per_request: int, profile: dict) -> None:
    from mlops_platform.data import load_dataset
    from mlops_platform.serving.prediction_log import PredictionLog

    features = load_dataset("digits").features
    served = features.sample(rows, replace=True, random_state=0).reset_index(drop=True)
    served["pixel_2_5"] += 0.5 * features["pixel_2_5"].std()
    values = served.to_numpy()
    labels = np.random.default_rng(0).integers(0, 10, rows)
    log = PredictionLog(path, max_bytes=16 * 1024 * 1024, backups=20, max_buffered=10**9)
    columns = list(profile["features"])
    identity = {"model_name": "digits", "model_version": "1"}
    for start in range(0, rows, per_request):
        stop = start + per_request
        log.record("r", identity, columns, values[start:stop], orjson.dumps(labels[start:stop].tolist()))
    log.flush()


def ours(path: str, profile: dict) -> dict:
    from mlops_platform.skew import DriftThresholds
    from mlops_platform.skew.report import render_html, summarize
    from mlops_platform.skew.served import read_served

    served = read_served(path, "digits", "1", list(profile["features"]))
    summary = summarize(profile, served, DriftThresholds(), {"model_name": "digits", "model_version": "1"})
    render_html(summary)
    return summary


def plain(path: str, train: pd.DataFrame) -> list[str]:
    from scipy import stats

    files = [*sorted(glob.glob(path + ".*"), reverse=True), path]
    lines = pd.concat([pd.read_json(f, lines=True) for f in files if not f.endswith(".lock")])
    rows = pd.DataFrame([row for block in lines["inputs"] for row in block], columns=train.columns)
    alpha = 0.05 / len(train.columns)
    return [c for c in train.columns if stats.ks_2samp(rows[c], train[c]).pvalue < alpha]


def best_of(repeats: int, fn, *args) -> tuple[float, float, object]:
    """Best wall seconds, the CPU seconds of that repeat (what an idle machine's wall time would be
    close to: this process is single-threaded), and the result."""
    best, cpu, result = float("inf"), float("inf"), None
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = fn(*args)
        if time.perf_counter() - started < best:
            best, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    return best, cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rows-per-request", default="1,100")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    profile, train = trained_profile()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{args.rows:,} logged rows, 64 features, profile of {profile['rows']} training rows")
    print(
        f"{'rows/request':>12} {'lines':>8} {'log MiB':>8} {'ours s':>8} {'cpu s':>8} {'plain s':>8} "
        f"{'ratio':>7}  drifted"
    )
    for per_request in (int(n) for n in args.rows_per_request.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            path = str(Path(folder) / "predictions.jsonl")
            write_log(path, args.rows, per_request, profile)
            size = sum(Path(f).stat().st_size for f in glob.glob(path + "*")) / 2**20
            ours_s, ours_cpu, summary = best_of(args.repeats, ours, path, profile)
            plain_s, _, plain_drifted = best_of(1, plain, path, train)
            assert summary["rows"] == args.rows and summary["drifted_features"] == ["pixel_2_5"], summary
            print(
                f"{per_request:>12} {args.rows // per_request:>8} {size:>8.1f} {ours_s:>8.2f} "
                f"{ours_cpu:>8.2f} "
                f"{plain_s:>8.2f} {plain_s / ours_s:>6.1f}x  ours {summary['drifted_features']}, "
                f"plain ks_2samp "
                f"{len(plain_drifted)} features"
            )


if __name__ == "__main__":
    main()
