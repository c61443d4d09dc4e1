"""Durations for `mlops runs reap --stale-after`."""

from __future__ import annotations

import pytest

from mlops_platform.errors import UserError
from mlops_platform.tracking.reaper import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("45", 45)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10 minutes", "-5m", "m"])
def test_bad_duration_names_the_value(text: str) -> None:
    with pytest.raises(UserError, match="invalid duration"):
        parse_duration(text)
