"""Training-serving skew: a frozen profile of the training split, and served inputs compared with it.

    from mlops_platform.skew import build_profile, compare_window

Importing this package imports neither mlflow nor scipy; the functions do, when called.
"""

from mlops_platform.skew.compare import DriftThresholds, FeatureDrift, compare_window
from mlops_platform.skew.profile import PROFILE_VERSION, build_profile

__all__ = ["PROFILE_VERSION", "DriftThresholds", "FeatureDrift", "build_profile", "compare_window"]
