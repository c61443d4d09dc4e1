"""The project files agree with the code: MLproject with the configs, python_env.yaml with pyproject."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from mlops_platform import mlproject
from mlops_platform.config.base import mlproject_default, mlproject_type
from mlops_platform.entrypoints import ENTRY_POINTS, MAIN_ENTRY_POINT

ROOT = Path(__file__).resolve().parents[1]


def load_project():
    from mlflow.projects._project_spec import load_project as mlflow_load_project

    return mlflow_load_project(str(ROOT))


def test_mlproject_is_the_rendering_of_the_configs():
    assert (ROOT / "MLproject").read_text() == mlproject.render(), (
        "MLproject is stale: run `python -m mlops_platform.mlproject > MLproject`"
    )


def test_mlproject_parameters_equal_config_fields_by_mlflows_own_loader():
    project = load_project()
    assert ENTRY_POINTS, "no entry point is declared"
    for entry in ENTRY_POINTS:
        spec = project.get_entry_point(entry.name)
        fields = entry.declared_fields()
        assert list(spec.parameters) == list(fields), entry.name
        for name, field in fields.items():
            parameter = spec.parameters[name]
            assert parameter.type == mlproject_type(field.annotation), (entry.name, name)
            assert parameter.default == mlproject_default(field.default), (entry.name, name)
            # Every declared parameter reaches the command, under its CLI spelling.
            assert f"--{name.replace('_', '-')} {{{name}}}" in spec.command, (entry.name, name)
        # The defaults, substituted by MLflow, parse back into the default config.
        command = spec.compute_command({}, storage_dir=None)
        assert command.startswith("python -m mlops_platform " + " ".join(entry.cli_path))


def test_main_is_the_pytorch_trainer_when_it_exists():
    project = load_project()
    names = {entry.name for entry in ENTRY_POINTS}
    if MAIN_ENTRY_POINT in names:
        assert project.get_entry_point("main").command == project.get_entry_point(MAIN_ENTRY_POINT).command


def test_every_job_is_a_mlops_subcommand_with_the_same_options():
    from click.testing import CliRunner

    from mlops_platform.cli import cli

    for entry in ENTRY_POINTS:
        result = CliRunner().invoke(cli, [*entry.cli_path, "--help"])
        assert result.exit_code == 0, result.output
        for name in entry.parameter_fields():
            assert f"--{name.replace('_', '-')}" in result.output, (entry.name, name)


def _requirement_names(requirements: list[str]) -> dict[str, str]:
    from packaging.requirements import Requirement

    parsed = {}
    for text in requirements:
        requirement = Requirement(text)
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        parsed[requirement.name.lower() + extras] = str(requirement.specifier)
    return parsed


def test_python_env_names_the_same_dependencies_as_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    python_env = yaml.safe_load((ROOT / "python_env.yaml").read_text())
    assert _requirement_names(python_env["dependencies"]) == _requirement_names(
        pyproject["project"]["dependencies"]
    )
    # A version pyenv has here: "3.11" would ask for the newest 3.11.x, which cannot be downloaded.
    assert python_env["python"].count(".") == 2
    assert "torch==2.13.0" in python_env["dependencies"]
