"""The tracking client: a run context that never blocks training and never loses a metric.

`Tracker().run(...)` yields a `TrackedRun`: metrics, params and tags go to an on-disk journal under
$MLOPS_HOME and a background sender delivers them with `log_batch`; `mlops sync` replays journals left
by dead processes; `mlops runs reap` ends runs whose heartbeat stopped. `RecordingTracker` has the
same interface and keeps everything in memory, for unit tests of training code.
"""

from mlops_platform.tracking.recording import RecordingRun, RecordingTracker
from mlops_platform.tracking.run import RunKilled, TrackedRun
from mlops_platform.tracking.tracker import Tracker

__all__ = ["RecordingRun", "RecordingTracker", "RunKilled", "TrackedRun", "Tracker"]
