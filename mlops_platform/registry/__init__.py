"""Search runs, pick the best one, promote it to a registry alias, roll it back.

    from mlops_platform.registry import search_runs, runs_frame, find_best_run, promote_best, rollback
    from mlops_platform.registry import PromotionRequest, run_promotion  # a request built once (from_config)

Importing this package does not import mlflow or pandas; the functions do, when called.
"""

from mlops_platform.registry.best import BestRun, NoQualifyingRunError, find_best_run, top_runs
from mlops_platform.registry.promote import (
    PromotionDecision,
    PromotionRequest,
    RegistryError,
    RollbackResult,
    promote_best,
    rollback,
    run_promotion,
)
from mlops_platform.registry.search import RunRecord, SearchError, runs_frame, search_runs

__all__ = [
    "BestRun",
    "NoQualifyingRunError",
    "PromotionDecision",
    "PromotionRequest",
    "RegistryError",
    "RollbackResult",
    "RunRecord",
    "SearchError",
    "find_best_run",
    "promote_best",
    "rollback",
    "run_promotion",
    "runs_frame",
    "search_runs",
    "top_runs",
]
