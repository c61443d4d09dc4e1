"""Typed configs, one per entry point: the only source of defaults for MLproject, the CLI and the code."""

from mlops_platform.config.base import ConfigError, JobConfig

__all__ = ["ConfigError", "JobConfig"]
