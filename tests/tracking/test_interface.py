"""Both implementations of the run interface (tracking/interface.py) match it member for member.

Jobs are typed with the Protocols and receive either implementation, so a method missing from one, or a
parameter named, ordered or defaulted differently, is a bug that only shows in the code path that uses
it: checked here for every member instead.
"""

from __future__ import annotations

import inspect

import pytest

from mlops_platform.sweep.trial import ChildRunTracker
from mlops_platform.tracking import RecordingRun, RecordingTracker, TrackedRun, Tracker, interface

# Members every Protocol class has from `typing` itself, not part of the interface we wrote.
_PROTOCOL_INTERNALS = set(dir(type("Empty", (interface.Protocol,), {})))


def protocol_members(protocol: type) -> dict[str, object]:
    members = {}
    for name, value in vars(protocol).items():
        if name in _PROTOCOL_INTERNALS and name not in ("__enter__", "__exit__"):
            continue
        if name.startswith("_") and name not in ("__enter__", "__exit__"):
            continue
        members[name] = value
    for name in getattr(protocol, "__annotations__", {}):
        members.setdefault(name, None)  # a plain attribute
    return members


def shape(function: object) -> list[tuple[str, object, object]]:
    """Names, kinds and defaults of the parameters; annotations are not compared (strings here)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def real_tracker() -> Tracker:
    # Making a Tracker or TrackedRun talks to no server: the client is made when the run starts.
    return Tracker(tracking_uri="http://127.0.0.1:9", replay_on_start=False)


IMPLEMENTATIONS = [
    (interface.Run, lambda: TrackedRun(real_tracker())),
    (interface.Run, lambda: RecordingRun(None, None, None)),
    (interface.Tracker, real_tracker),
    (interface.Tracker, RecordingTracker),
    (interface.Tracker, lambda: ChildRunTracker(RecordingTracker(), {}, lambda run: None)),
    (interface.MetricsSink, lambda: TrackedRun(real_tracker())),
    (interface.MetricsSink, lambda: RecordingRun(None, None, None)),
    (interface.DeliverySettings, real_tracker),
]


@pytest.mark.parametrize(
    ("protocol", "make"),
    IMPLEMENTATIONS,
    ids=[f"{p.__name__}-{i}" for i, (p, _) in enumerate(IMPLEMENTATIONS)],
)
def test_implementation_has_every_member_with_the_same_signature(protocol, make) -> None:
    instance = make()
    members = protocol_members(protocol)
    assert members, f"found no members on {protocol.__name__}"
    for name, declared in members.items():
        assert hasattr(instance, name), f"{type(instance).__name__} lacks {protocol.__name__}.{name}"
        if declared is None or isinstance(declared, property):
            assert not callable(getattr(instance, name)), f"{name} should be a value, not a method"
            continue
        implemented = getattr(type(instance), name)
        assert shape(implemented) == shape(declared), (
            f"{type(instance).__name__}.{name}{inspect.signature(implemented)} differs from "
            f"{protocol.__name__}.{name}{inspect.signature(declared)}"
        )
    assert isinstance(instance, protocol)


def test_the_check_catches_a_differing_signature() -> None:
    """The comparison above is not vacuous: a renamed parameter is a different shape."""

    class Drifted(RecordingRun):
        def log_metrics(self, values, step=None) -> None:  # "values", not "metrics"
            pass

    assert shape(Drifted.log_metrics) != shape(interface.Run.log_metrics)
    assert shape(RecordingRun.log_metrics) == shape(interface.Run.log_metrics)


def test_the_run_interface_covers_what_jobs_need_beyond_logging() -> None:
    members = protocol_members(interface.Run)
    assert {"logged_metric_steps", "tag_run", "log_model", "log_dataset", "flush"} <= set(members)


def test_recording_run_answers_logged_steps_and_tags_other_runs() -> None:
    with RecordingTracker().run() as run:
        run.log_metrics({"loss": 1.0}, step=0)
        run.log_metrics({"loss": 0.5, "acc": 0.9}, step=3)
        run.tag_run("other", {"mlops.resumed_run_id": run.run_id})
    assert run.logged_metric_steps() == {("loss", 0), ("loss", 3), ("acc", 3)}
    assert run.other_run_tags == {"other": {"mlops.resumed_run_id": run.run_id}}
