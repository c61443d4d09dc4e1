"""One CLI boundary: a UserError from any subcommand becomes `Error: <message>` and exit status 1, with
passwords in URIs masked, in one place (cli/__init__.py's root group)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from mlops_platform.cli import CommandLine
from mlops_platform.errors import UserError

CLI_PACKAGE = Path(__file__).resolve().parents[2] / "mlops_platform" / "cli"


def test_a_user_error_in_a_nested_command_is_one_line_and_exit_1() -> None:
    root = CommandLine("root")
    group = click.Group("group")
    root.add_command(group)

    @group.command()
    def fail() -> None:
        raise UserError("lock_uri=postgresql://me:hunter2@db/x refused")

    result = CliRunner().invoke(root, ["group", "fail"])
    assert result.exit_code == 1
    assert result.output == "Error: lock_uri=postgresql://me:***@db/x refused\n"


def test_other_exceptions_are_not_swallowed() -> None:
    root = CommandLine("root")

    @root.command()
    def crash() -> None:
        raise RuntimeError("a bug")

    result = CliRunner().invoke(root, ["crash"])
    assert isinstance(result.exception, RuntimeError)


def test_a_real_command_reports_through_the_boundary(tmp_path: Path) -> None:
    missing = tmp_path / "predictions.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "mlops_platform", "serve", "report", "--log", str(missing), "--no-mlflow"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"Error: no prediction log at {missing}"
    assert "Traceback" not in done.stderr


def test_no_command_module_converts_user_errors_itself() -> None:
    """Only the root group catches UserError to print it; a command may catch it to add something
    (and re-raise), never to turn it into its own ClickException."""
    offenders = []
    for path in sorted(CLI_PACKAGE.glob("*.py")):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler) and "UserError" in ast.unparse(node.type or ast.Pass()):
                raised = [n for n in ast.walk(node) if isinstance(n, ast.Raise) and n.exc is not None]
                if any("ClickException" in ast.unparse(r.exc) for r in raised):
                    offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
