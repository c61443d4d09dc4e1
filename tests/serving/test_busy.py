"""The champion's busy share (serving/busy.py), the moving average the shadow's admission test reads, and
that test: a busy champion sheds its copies."""

from __future__ import annotations

import math
import time

import pytest

from mlops_platform.serving.busy import BusyShare


class FakeClock:
    """time.monotonic for busy.py, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("mlops_platform.serving.busy.time.monotonic", fake)
    return fake


def read_every_ms(share: BusyShare, clock: FakeClock, seconds: float) -> float:
    """Let `seconds` pass, read once a millisecond (the admission test reads every few)."""
    for _ in range(round(seconds * 1000)):
        clock.now += 0.001
        busy = share.value()
    return busy


def test_busy_share_rises_while_busy_and_decays_while_idle_with_its_time_constant(clock):
    share = BusyShare(window_s=0.1)
    assert share.value() == 0.0
    assert share.started() == clock.now
    # Busy for one time constant: 1 - 1/e of the way to 1; for ten: all but 1/e^10.
    assert read_every_ms(share, clock, 0.1) == pytest.approx(1 - math.exp(-1), rel=1e-3)
    assert read_every_ms(share, clock, 0.9) == pytest.approx(1.0, abs=1e-4)
    clock.now += 0.0005
    assert share.finished() == clock.now and share.in_flight == 0
    at_end = share.value()
    # Idle for one time constant: decayed by 1/e, read often or once.
    assert read_every_ms(share, clock, 0.1) == pytest.approx(at_end * math.exp(-1), rel=1e-3)
    clock.now += 0.1
    assert share.value() == pytest.approx(at_end * math.exp(-2), rel=1e-3)
    # A reading from before the last one (another clock's) changes nothing.
    assert share.value(clock.now - 1.0) == share.value(clock.now)


def test_busy_share_counts_overlapping_requests_once_and_a_stretch_across_readings_once(clock):
    share = BusyShare(window_s=0.1)
    share.value()
    share.started()
    clock.now += 0.1
    share.started()  # a second request while the first is in flight: the same busy stretch
    clock.now += 0.1
    first = share.value()  # busy through the whole 0.2 s since the last reading
    assert first == pytest.approx(1 - math.exp(-2))
    clock.now += 0.1
    share.finished()
    assert share.in_flight == 1  # one still in flight: still busy
    clock.now += 0.1
    share.finished()
    clock.now += 0.2  # idle
    # Since the last reading: 0.2 s busy (the stretch under way counted from that reading on, not
    # from its start again), 0.2 s idle: a mean of 0.5 over 0.4 s.
    assert share.value() == pytest.approx(0.5 + (first - 0.5) * math.exp(-4))


def test_a_busy_champion_sheds_every_shadow_copy():
    from mlops_platform.serving.shadow import ShadowWorker

    busy = BusyShare(window_s=0.001)
    worker = ShadowWorker(capacity=64, settings=dict, max_busy=0.8, champion_busy=busy)
    worker._ready = True  # a worker is up: only the champion's load can refuse the copy
    busy.started()
    time.sleep(0.02)  # twenty time constants with a request in flight
    assert worker.full()
    busy.finished()
    assert worker.last_champion_busy > 0.8
    time.sleep(0.02)  # and as long with none: the champion no longer counts as busy
    assert busy.value() < 0.01
    worker._gate_due = 0.0  # the gate is read again at the next copy (at most every GATE_EVERY_S)
    assert not worker.full()


@pytest.mark.parametrize("value", ["0", "1.5"])
def test_shadow_max_busy_outside_0_1_is_refused_before_anything_loads(value):
    from click.testing import CliRunner

    from mlops_platform.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--model-uri", "models:/absent@x", "--shadow-max-busy", value])
    assert result.exit_code == 1 and "invalid parameter shadow_max_busy" in result.output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--challenger", "models:/absent@y", "--shadow-cpus", "4096"], "CPUs [4096] do not exist here"),
        (["--challenger", "models:/absent@y", "--shadow-cpus", "1-0"], "is not a CPU list"),
        (["--shadow-cpus", "0"], "--shadow-cpus needs --challenger and --mode shadow"),
    ],
)
def test_shadow_cpus_the_server_may_not_use_are_refused_before_anything_loads(options, message):
    from click.testing import CliRunner

    from mlops_platform.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--model-uri", "models:/absent@x", *options])
    assert result.exit_code == 1 and message in result.output, result.output
