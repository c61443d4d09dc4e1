"""The tracking client: a run context that never blocks training and never loses a metric.

    from mlops_platform.tracking import Tracker

    with Tracker().run(experiment="digits", run_name="mlp") as run:
        run.log_config(config)                      # params (flattened) + config.json
        run.log_metrics({"loss": 0.3}, step=10)     # returns in microseconds

How it keeps its promises:
- Every metric, param, tag and artifact is first appended to the run's journal under
  `$MLOPS_HOME/journal/<run_id>/` (artifacts as a copy in its spool). The write reaches the OS before
  the call returns, so it survives the death of the process; a background thread delivers the journal
  with `log_batch` (up to 1,000 metrics a request) and records how far the server acknowledged.
- While the server is down the sender retries with backoff; training never waits on it.
- A journal left behind (SIGKILL, or a run that ended while the server was down) is delivered by
  `mlops sync` or by the next tracker start, with the original timestamps. A record's identity (key,
  step, value, timestamp) is fixed when it is accepted, and the SQL stores keep one row per identity,
  so a batch re-sent because its acknowledgement was lost is stored once.
- The run ends FINISHED, FAILED (traceback in `error/traceback.txt`, message in tag `mlops.error`) or
  KILLED (SIGTERM/SIGINT; the process then exits 128+signal). A heartbeat tag (`mlops.heartbeat`)
  lets `mlops runs reap --stale-after 10m` mark runs whose process died unseen as KILLED.
- Param values over MLflow's 6,000 characters are cut with a marker, in full in `params_overflow.json`,
  with a warning (see `params`); values `mlflow run` logged from the command line ("1e-3" for 0.001)
  are recognised as the same value. Records the server refuses for good go to
  `$MLOPS_HOME/rejected/<run_id>.jsonl` with a warning.
- Settings: `Tracker(...)` arguments; `MLOPS_HEARTBEAT_INTERVAL` and `MLOPS_SYSTEM_METRICS_INTERVAL`
  (seconds, 0 turns system metrics off) in the environment.

The interface jobs see is written once, as Protocols, in `tracking/interface.py` (`Tracker`, `Run`,
`MetricsSink`). `RecordingTracker` implements it too and keeps everything in memory, for unit tests of
training code.
"""

from mlops_platform.tracking.recording import RecordingRun, RecordingTracker
from mlops_platform.tracking.run import RunKilled, TrackedRun
from mlops_platform.tracking.tracker import Tracker

__all__ = ["RecordingRun", "RecordingTracker", "RunKilled", "TrackedRun", "Tracker"]
