"""Starts the PyTorch job under torchrun (`torch.distributed.run`): `mlops train torch --nproc-per-node 2`
and the MLproject entry point `train_torch` with `-P nproc_per_node=2` come here.

No launcher of our own: this builds torchrun's command line from the config and runs torchrun in this
process. Its elastic agent starts one worker per rank (`python -m mlops_platform train torch` with the
same parameters), restarts the whole group up to `max_restarts` times when a rank dies, and stops the
others when one fails. The rendezvous is c10d: on one node a free local port; on several, the
`rdzv_endpoint` every node names, with a rendezvous id derived from it so that all nodes agree.

When the workers fail for good, a run that rank 0 could not end itself (it was SIGKILLed) is marked
FAILED here, so nothing is left RUNNING.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import uuid
from typing import Any

from mlops_platform.config.train_torch import TorchTrainConfig
from mlops_platform.errors import UserError

logger = logging.getLogger(__name__)

# How the workers are started: the job's own `mlops` subcommand (entrypoints.py's cli_path).
WORKER_MODULE = "mlops_platform"
WORKER_COMMAND = ("train", "torch")
SHARED_STORE_SWITCH = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"


class WorkersFailed(UserError):
    """torchrun gave up on the worker group; it has already printed each failed rank's error."""


def rendezvous_id(config: TorchTrainConfig) -> str:
    """The c10d rendezvous id: fresh on one node; on several, the same on every node (from the endpoint),
    since nodes meet only under the same id."""
    if config.rdzv_endpoint is None:
        return f"mlops-{uuid.uuid4().hex}"
    return f"mlops-{hashlib.sha1(config.rdzv_endpoint.encode()).hexdigest()[:16]}"


def torchrun_argv(config: TorchTrainConfig, job_id: str) -> list[str]:
    """torchrun's arguments for this config, the worker command included."""
    return [
        "--nproc-per-node", str(config.nproc_per_node),
        "--nnodes", str(config.nnodes),
        "--node-rank", str(config.node_rank),
        "--max-restarts", str(config.max_restarts),
        "--rdzv-backend", "c10d",
        "--rdzv-endpoint", config.rdzv_endpoint or "localhost:0",  # port 0: a free one
        "--rdzv-id", job_id,
        "--module", WORKER_MODULE,
        *WORKER_COMMAND,
        *worker_options(config),
    ]  # fmt: skip


def worker_options(config: TorchTrainConfig) -> list[str]:
    """The config as `mlops train torch` options; the workers parse them back to the same config."""
    options = []
    for name, value in config.to_params().items():
        if value is None:
            text = ""
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        options += [f"--{name.replace('_', '-')}", text]
    return options


def launch(config: TorchTrainConfig) -> str:
    """Run the job on `config.world_size` ranks under torchrun; returns the run id (empty on a node
    whose ranks did not include rank 0, which owns the run).

    Raises:
        WorkersFailed: the worker group failed (after any restarts).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args
    from torch.distributed.run import run as torchrun

    from mlops_platform.training.job_record import job_record, remembered_run

    job_id = rendezvous_id(config)
    job_record(job_id).unlink(missing_ok=True)  # an id derived from the endpoint may name an old job
    # The workers' store must be new for each attempt: torchrun's default of sharing the rendezvous
    # store hands a restarted group the previous attempt's addresses, and the process group then fails
    # to connect ("Connection refused"): https://github.com/pytorch/pytorch/issues/135712 and #167288.
    previous = os.environ.get(SHARED_STORE_SWITCH)
    os.environ.setdefault(SHARED_STORE_SWITCH, "1")
    try:
        torchrun(parse_args(torchrun_argv(config, job_id)))
    except ChildFailedError as error:
        run_id = remembered_run(job_id)
        if run_id:
            end_run_left_running(run_id, describe_failure(error))
        raise WorkersFailed(
            f"the training ranks failed{f' (run {run_id})' if run_id else ''}; torchrun's report is above"
        ) from None
    except SignalException as error:  # torchrun stopped the workers (they end their run KILLED)
        raise SystemExit(128 + int(error.sigval)) from None
    finally:
        sys.stdout.flush()
        if previous is None:
            os.environ.pop(SHARED_STORE_SWITCH, None)
    return remembered_run(job_id) or ""


def describe_failure(error: Any) -> str:
    """`torchrun: rank 0 died of SIGKILL` or `... exited with 1`, from torchrun's ChildFailedError."""
    import signal

    rank, failure = error.get_first_failure()
    code = failure.exitcode
    if code < 0:
        try:
            return f"torchrun: rank {rank} died of {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"torchrun: rank {rank} exited with {code}"


def end_run_left_running(run_id: str, reason: str) -> None:
    """Mark the run FAILED if no rank ended it (rank 0 was killed before it could)."""
    from mlops_platform.tracking.reaper import fail_if_running

    if fail_if_running(run_id, reason):
        logger.warning("run %s was left RUNNING by the failed workers: marked FAILED", run_id)
