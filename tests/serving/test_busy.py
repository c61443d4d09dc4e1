"""The champion's busy share (serving/busy.py), the moving average the shadow's admission test reads, and
that test: a busy champion sheds its copies."""

from __future__ import annotations

import math
import time

import pytest

from mlops_platform.serving.busy import BusyShare


def test_busy_share_rises_while_busy_and_decays_while_idle_with_its_time_constant():
    share = BusyShare(window_s=0.1)
    start = time.monotonic()
    assert share.value(start) == pytest.approx(0.0)
    share.flip(True)
    flipped = share._state[2]
    # Busy for one time constant: 1 - 1/e of the way to 1; for ten: all but 1/e^10.
    assert share.value(flipped + 0.1) == pytest.approx(1 - math.exp(-1))
    assert share.value(flipped + 1.0) == pytest.approx(1.0, abs=1e-4)
    time.sleep(0.05)
    share.flip(False)
    busy_now, at = share.value(), share._state[2]
    assert 0 < busy_now < 1
    assert share.value(at + 0.1) == pytest.approx(busy_now * math.exp(-1), rel=1e-3)
    # A reading from before the last flip (another thread's clock) is the value at the flip, not more.
    assert share.value(at - 1.0) == pytest.approx(share._state[1])


def test_a_busy_champion_sheds_every_shadow_copy():
    from mlops_platform.serving.shadow import ShadowWorker

    worker = ShadowWorker(capacity=64, settings=dict, max_busy=0.8)
    worker._ready = True  # a worker is up: only the champion's load can refuse the copy
    worker.champion_busy_share = BusyShare(window_s=0.001)
    worker.champion_started()
    time.sleep(0.02)  # twenty time constants with a request in flight
    assert worker.full()
    worker.champion_finished()
    assert worker.last_champion_busy > 0.8
    time.sleep(0.02)  # and as long with none: the champion no longer counts as busy
    assert worker.champion_busy_share.value() < 0.01


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
