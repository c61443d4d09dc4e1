"""Concurrent promoters always leave the true best as champion.

Four worker processes promote at once while new runs arrive between their starts. The last promoter
starts after the last run exists, so the true best is known: the best FINISHED run with a model.
Each worker has its own MLOPS_HOME, so the local file lock is NOT shared: this checks the
compare-and-re-check that holds for promoters on different machines. A second test shares the lock
through PostgreSQL's advisory lock (`lock_uri`).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import tempfile
import uuid
from concurrent.futures import ProcessPoolExecutor

import pytest

from .helpers import make_run

PROMOTERS = 4
TRIES = 20


_ALL_WARM = None  # each worker's handle on the barrier every worker waits at once warm


def _isolate_home(all_warm) -> None:
    global _ALL_WARM
    _ALL_WARM = all_warm
    os.environ["MLOPS_HOME"] = tempfile.mkdtemp(prefix="promoter-home-")


def _warm(_: int) -> int:
    import mlflow.tracking  # noqa: F401  (the slow import, done before the first try)

    import mlops_platform.registry.promote  # noqa: F401

    # A worker waits here until every worker has arrived, so no worker can take a second warm-up task:
    # each of the PROMOTERS processes runs exactly one, however slowly the machine starts them.
    _ALL_WARM.wait(timeout=300)
    return os.getpid()


def _promote(uri: str, experiment: str, model_name: str, lock_uri: str | None) -> tuple[bool, str]:
    from mlops_platform.registry import promote_best

    decision = promote_best(experiment, "val_acc", model_name, "max", tracking_uri=uri, lock_uri=lock_uri)
    return decision.promoted, decision.run_id


def run_tries(tracking_uri: str, experiment_id: str, tries: int, lock_uri: str | None = None) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    rng = random.Random(7)
    values: dict[str, float] = {}
    context = multiprocessing.get_context("spawn")
    all_warm = context.Barrier(PROMOTERS)
    with ProcessPoolExecutor(
        PROMOTERS, mp_context=context, initializer=_isolate_home, initargs=(all_warm,)
    ) as pool:
        # Warm the workers (imports) so the promoters of a try really overlap.
        assert len(set(pool.map(_warm, range(PROMOTERS)))) == PROMOTERS
        for attempt in range(tries):
            model_name = f"concurrent-{attempt}-{uuid.uuid4().hex[:6]}"
            futures = []
            for promoter in range(PROMOTERS):
                futures.append(pool.submit(_promote, tracking_uri, experiment_id, model_name, lock_uri))
                if promoter < PROMOTERS - 1:  # runs arrive while promoters work
                    value = round(rng.uniform(0, 1), 6)
                    values[make_run(tracking_uri, experiment_id, {"val_acc": value})] = value
            results = [future.result(timeout=120) for future in futures]
            best = max(values, key=values.get)
            champion = client.get_model_version_by_alias(model_name, "champion")
            assert champion.run_id == best, (
                f"try {attempt}: champion {champion.run_id}, best {best}: {results}"
            )


@pytest.mark.slow
def test_concurrent_promoters_without_shared_lock(sqlite_tracking_uri, fresh_experiment) -> None:
    _, experiment_id = fresh_experiment(sqlite_tracking_uri)
    make_run(sqlite_tracking_uri, experiment_id, {"val_acc": 0.5})
    run_tries(sqlite_tracking_uri, experiment_id, TRIES)


@pytest.mark.slow
def test_concurrent_promoters_with_advisory_lock(
    postgres_server, postgres_database_uri, fresh_experiment
) -> None:
    _, experiment_id = fresh_experiment(postgres_server.url)
    make_run(postgres_server.url, experiment_id, {"val_acc": 0.5})
    run_tries(postgres_server.url, experiment_id, 3, lock_uri=postgres_database_uri)
