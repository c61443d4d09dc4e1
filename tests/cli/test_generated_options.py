"""`mlops serve` and `mlops server start` take their options from their configs, with help on each."""

from __future__ import annotations

import pytest

from mlops_platform.cli import cli
from mlops_platform.config.server import ServerStartConfig
from mlops_platform.serving.config import ServeConfig


def command(*words: str):
    import click

    ctx = click.Context(cli)
    found = cli
    for word in words:
        found = found.get_command(ctx, word)
    return found


@pytest.mark.parametrize(
    ("words", "config"), [(("serve",), ServeConfig), (("server", "start"), ServerStartConfig)]
)
def test_options_are_the_config_fields_each_with_help_and_the_config_default(words, config) -> None:
    options = {p.name: p for p in command(*words).params if p.name != "help"}
    assert set(options) == set(config.model_fields)
    for name, field in config.model_fields.items():
        assert options[name].help and options[name].help == field.description, name
        if not field.is_required():
            assert options[name].default == field.default, name


def test_password_carrying_server_options_also_come_from_the_environment() -> None:
    options = {p.name: p for p in command("server", "start").params}
    assert options["backend_store_uri"].envvar == "MLFLOW_BACKEND_STORE_URI"
    assert options["auth_database_uri"].envvar == "MLOPS_AUTH_DATABASE_URI"
