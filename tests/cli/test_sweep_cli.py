"""`mlops sweep` on the command line: trainer arguments passed through; a bad space refused before a study."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlops_platform.cli.jobs import parse_passthrough
from mlops_platform.config.base import ConfigError


def test_passthrough_arguments_as_mlflow_run_appends_them():
    assert parse_passthrough(["--dataset", "wine", "--hidden_sizes", "8,4", "--batch-size=16"]) == {
        "dataset": "wine",
        "hidden_sizes": "8,4",
        "batch_size": "16",
    }
    with pytest.raises(ConfigError, match="has no value"):
        parse_passthrough(["--dataset"])
    with pytest.raises(ConfigError, match="unexpected argument 'wine'"):
        parse_passthrough(["wine"])


def test_a_bad_space_fails_on_the_command_line_before_any_study_or_run(tmp_path):
    """No tracking server is even needed: the error comes first, and no storage file is created."""
    path = tmp_path / "space.yaml"
    path.write_text("lr: {type: float, low: 0.001, high: 0.1}\nnot_a_param: {type: int, low: 1, high: 2}\n")
    home = tmp_path / "home"
    result = subprocess.run(
        [sys.executable, "-m", "mlops_platform", "sweep", "run", "--space", str(path), "--dataset", "wine",
         "--model", "mlp"],
        capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "MLOPS_HOME": str(home), "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "unknown parameter 'not_a_param'" in result.stderr
    assert not home.exists()
