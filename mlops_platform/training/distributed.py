"""Data-parallel ranks on torch.distributed: who this process is, its process group, its data shard, and
the reductions that make metrics cover every rank's data.

torchrun (`torch.distributed.run`) starts the processes and describes each one in its environment
(RANK, WORLD_SIZE, LOCAL_RANK, GROUP_RANK, TORCHELASTIC_RUN_ID, TORCHELASTIC_RESTART_COUNT; see
https://pytorch.org/docs/stable/elastic/run.html#environment-variables). `World.from_env` reads it and
`process_group` joins the group through env:// (gloo on CPU, NCCL on CUDA). A process outside torchrun,
or the only process of a world of one, is `World()`: the same calls, no communication, so the loop has
one code path.

The data is split with `DistributedSampler` (the job's seed, reshuffled per epoch by `set_epoch`). Its
shards are strided (rank r takes positions r, r+W, r+2W, ... of the epoch's permutation) and padded
with repeats to equal length; `shard_indices` drops the padding, so every sample counts exactly once.
With a per-rank batch of batch_size/W, the union of the ranks' k-th batches is then exactly the k-th
batch of the one-process permutation: the same global batches at any world size.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
from torch import nn

from mlops_platform.errors import UserError

# Long enough for rank 0's slowest lone work between collectives (opening the run, logging datasets, a
# resume's checkpoint download); a dead peer is noticed sooner by torchrun, which stops the group.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class World:
    """This process's place in the job. The defaults describe a lone process.

    Attributes:
        rank: global rank; 0 owns the MLflow run.
        size: number of ranks.
        local_rank: rank on this node (picks the CUDA device).
        node_rank: the node's rank (torchrun's GROUP_RANK); names the node's system metrics.
        restart_count: how many times torchrun restarted the worker group.
        job_id: torchrun's rendezvous id (TORCHELASTIC_RUN_ID), the same for every rank and restart.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    node_rank: int = 0
    restart_count: int = 0
    job_id: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> World:
        """The world torchrun described in the environment, or a lone process outside torchrun."""
        env = os.environ if env is None else env
        if "RANK" not in env or "WORLD_SIZE" not in env:
            return cls()
        return cls(
            rank=int(env["RANK"]),
            size=int(env["WORLD_SIZE"]),
            local_rank=int(env.get("LOCAL_RANK", "0")),
            node_rank=int(env.get("GROUP_RANK", "0")),
            restart_count=int(env.get("TORCHELASTIC_RESTART_COUNT", "0")),
            job_id=env.get("TORCHELASTIC_RUN_ID"),
        )

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_node_leader(self) -> bool:
        """Local rank 0: the one process per node that samples the node's system metrics."""
        return self.local_rank == 0

    # -------------------------------------------------------------------------------- collectives
    # Every rank must make the same calls in the same order; in a world of one they do nothing.

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over the ranks, in place; every rank gets the same result."""
        if self.distributed:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's `value` (picklable), on every rank."""
        if not self.distributed:
            return value
        holder = [value if self.is_main else None]
        torch.distributed.broadcast_object_list(holder, src=0)
        return holder[0]

    def gather_objects(self, value: Any) -> list[Any] | None:
        """Every rank's `value` in rank order on rank 0; None on the other ranks."""
        if not self.distributed:
            return [value]
        gathered: list[Any] | None = [None] * self.size if self.is_main else None
        torch.distributed.gather_object(value, gathered, dst=0)
        return gathered


def backend_for(device: str) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.startswith("cuda") else "gloo"


def rank_device(world: World, device: str) -> str:
    """The device of this rank: `cuda:<local_rank>` for CUDA (one GPU per process), else `device`.

    Raises:
        UserError: more ranks on this node than GPUs.
    """
    if device != "cuda" or not world.distributed:
        return device
    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise UserError(
            f"device=cuda with local rank {world.local_rank}, but this node has {count} GPU(s): "
            f"use nproc_per_node <= {count}"
        )
    return f"cuda:{world.local_rank}"


@contextlib.contextmanager
def process_group(world: World, device: str) -> Iterator[World]:
    """Join the torchrun group (env://) for the duration; a lone process joins nothing."""
    if not world.distributed:
        yield world
        return
    if device.startswith("cuda"):
        # Collectives on objects (broadcast_object_list, gather_object) use the current device.
        torch.cuda.set_device(torch.device(device))
    torch.distributed.init_process_group(backend_for(device), timeout=COLLECTIVE_TIMEOUT)
    try:
        yield world
    finally:
        torch.distributed.destroy_process_group()


def end_follower_process() -> NoReturn:
    """End a finished follower rank's process (a torchrun worker other than rank 0) here, skipping the
    interpreter's finalization.

    Why: gloo's worker threads free a finished collective's tensors a moment after the caller has moved
    on, and freeing a tensor Python once held takes the GIL. When that moment falls after the interpreter
    began to finalize, the thread is stopped inside a noexcept destructor and the process aborts
    ("terminate called without an active exception", SIGABRT; PyTorch #190489). torchrun then fails a
    job whose training succeeded: a follower leaves within milliseconds of its last gather, and 5 of 97
    two-rank jobs did on this 2-core machine. `destroy_process_group` does not join those threads while
    DDP's reducer still holds the group. A follower has nothing left to finalize: it logged nothing, its
    node sampler is stopped and its group destroyed; so it flushes its output and exits with 0. Rank 0
    is not ended this way: it has MLflow's exit handlers to run, and seconds of model logging after its
    last collective.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def check_batch_size(batch_size: int, world: World) -> None:
    """The global batch splits evenly over the ranks, or a UserError before any run."""
    if batch_size % world.size:
        raise UserError(
            f"batch_size={batch_size} is the global batch, split evenly over the {world.size} ranks of "
            f"this job (WORLD_SIZE={world.size}): it must be a multiple of {world.size}"
        )


def wrap_model(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """`model` in DistributedDataParallel (gradients averaged over the ranks in backward), or itself.

    DDP broadcasts rank 0's parameters and buffers when it is built, so every rank starts equal. Batch
    norm (the CNN) normalizes each rank's part of the batch: SyncBatchNorm works on GPUs only and would
    replace the layers of the module that is exported for serving.
    """
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":  # one GPU per process: the current one, set from LOCAL_RANK
        index = device.index if device.index is not None else torch.cuda.current_device()
        return DistributedDataParallel(model, device_ids=[index], output_device=index)
    return DistributedDataParallel(model)


def local_count(n_samples: int, world: World) -> int:
    """How many real (unpadded) samples this rank's shard holds: positions rank, rank+W, ... below n."""
    return len(range(world.rank, n_samples, world.size))


def shard_indices(n_samples: int, world: World, *, shuffle: bool, seed: int, epoch: int) -> torch.Tensor:
    """This rank's sample indices for one epoch, from `DistributedSampler`, without its padding.

    DistributedSampler pads the permutation with repeats of its start up to a multiple of the world
    size and hands rank r the positions r, r+W, ...; the padded positions (>= n_samples) are thus the
    tail of each shard, and cutting the shard to `local_count` removes them.
    """
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(
        range(n_samples),  # the sampler only needs len()
        num_replicas=world.size,
        rank=world.rank,
        shuffle=shuffle,
        seed=seed,
        drop_last=False,
    )
    sampler.set_epoch(epoch)
    indices = list(sampler)[: local_count(n_samples, world)]
    return torch.tensor(indices, dtype=torch.long)
