"""mlops_platform: training entry points, tracking, promotion and serving on a self-hosted MLflow."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mlops_platform")
except PackageNotFoundError:  # run from a source tree, as `mlflow run` does in a bare environment
    __version__ = "0.0.0+source"
