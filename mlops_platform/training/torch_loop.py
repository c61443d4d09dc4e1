"""The PyTorch training loop. It never imports MLflow: it reports to a `MetricsSink` (the tracker's run
object, or a recording one in tests) and hands finished checkpoint files to a callback.

What it guarantees:
- `model.train()` for training, `model.eval()` + `torch.no_grad()` for evaluation.
- On CUDA: autocast (bf16/fp16), a grad scaler for fp16, pinned host batches copied with
  `non_blocking=True`, and no host sync per step except at logging steps (losses and correct counts
  are summed on the device and read once per epoch).
- Metrics: `train_loss_step`, `lr`, `grad_norm` every `log_every_n_steps` optimizer steps (step = global
  optimizer step); `train_loss`, `train_accuracy`, `val_loss`, `val_accuracy`, `val_f1_macro`,
  `epoch_seconds`, `samples_per_sec` every epoch (step = epoch).
- Resume: a checkpoint holds everything that decides what happens next (weights, optimizer, scheduler,
  scaler, RNG states, counters, best-so-far, history; the shuffle is a function of seed and epoch), so
  on CPU a resumed fit ends exactly where an uninterrupted one does.
- Data parallel (a `World` of several ranks, see training/distributed.py): `batch_size` is the global
  batch, each rank takes batch_size/W of it from its DistributedSampler shard and the model is wrapped
  in DistributedDataParallel. Each rank's loss is weighted by its share of the global batch, so the
  averaged gradient is the mean over the global batch whatever the shards' sizes (the last batch may
  split unevenly): the same optimisation as one process. Training and validation metrics are
  all-reduced sums over every rank's samples; only rank 0 writes checkpoints (with every rank's RNG
  state) and its sink is the only one that reaches the tracker.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlops_platform.config.train_torch import TorchTrainConfig
from mlops_platform.errors import UserError
from mlops_platform.evaluation import is_better, metric_direction
from mlops_platform.tracking.interface import MetricsSink
from mlops_platform.training.checkpoint import (
    BackgroundCheckpointWriter,
    capture_rng_state,
    restore_rng_state,
)
from mlops_platform.training.device import Precision
from mlops_platform.training.distributed import World, shard_indices, wrap_model
from mlops_platform.training.losses import build_loss

STEP_METRICS: tuple[str, ...] = ("train_loss_step", "lr", "grad_norm")
EPOCH_METRICS: tuple[str, ...] = (
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_f1_macro",
    "epoch_seconds",
    "samples_per_sec",
)
EVAL_BATCH_SIZE = 1024
SANITY_MAX_STEPS = 300
SANITY_LOSS_THRESHOLD = 0.05


# (epoch, the epoch's metrics): how a caller watches training, e.g. a sweep reporting to its pruner.
EpochCallback = Callable[[int, dict[str, float]], None]


class SanityCheckError(UserError):
    """The model could not overfit a single batch: the setup (lr, model, loss, data) is broken."""


@dataclass(frozen=True)
class TensorData:
    """Standardized float32 features and int64 class indices, on the CPU."""

    features: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.targets)


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    f1_macro: float
    probabilities: np.ndarray
    predictions: np.ndarray


@dataclass
class FitResult:
    """What a fit leaves behind; `model` holds the weights of the best epoch."""

    model: nn.Module
    best_epoch: int
    best_metric: float
    epochs_run: int
    global_step: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ building


def seed_everything(seed: int, deterministic: bool, device: str) -> None:
    """Seed python, numpy and torch; deterministic algorithms make CPU reruns bit-identical."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # On CUDA some kernels have no deterministic version; warn instead of failing there.
        torch.use_deterministic_algorithms(True, warn_only=device != "cpu")
        torch.backends.cudnn.benchmark = False


def build_optimizer(config: TorchTrainConfig, parameters: Any) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"optimizer={config.optimizer!r} is not one of sgd, adam, adamw")


def build_scheduler(config: TorchTrainConfig, optimizer: torch.optim.Optimizer) -> Any:
    """An epoch-level LR scheduler, or None. `plateau` follows `early_stopping_metric`."""
    if config.scheduler == "none":
        return None
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.lr_step_size, gamma=config.lr_gamma
        )
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode=metric_direction(config.early_stopping_metric),
            factor=config.lr_gamma,
            patience=config.plateau_patience,
        )
    raise ValueError(f"scheduler={config.scheduler!r} is not one of none, step, cosine, plateau")


def step_scheduler(scheduler: Any, monitored_value: float) -> None:
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(monitored_value)
    else:
        scheduler.step()


def accuracy_and_f1_macro(
    targets: np.ndarray, predictions: np.ndarray, n_classes: int
) -> tuple[float, float]:
    """Accuracy and macro F1 over all `n_classes` from one confusion matrix.

    The same definitions as `evaluation.classification_metrics` (scikit-learn's, zero_division=0; a test
    holds them equal) at a hundredth of the cost, which matters once per epoch on small epochs.
    """
    matrix = np.bincount(targets * n_classes + predictions, minlength=n_classes * n_classes)
    return metrics_from_confusion(matrix.reshape(n_classes, n_classes), len(targets))


def metrics_from_confusion(matrix: np.ndarray, n_samples: int) -> tuple[float, float]:
    """Accuracy and macro F1 from a confusion matrix (rows: true class, columns: predicted)."""
    n_classes = matrix.shape[0]
    true_positives = np.diag(matrix).astype(np.float64)
    denominator = matrix.sum(axis=0) + matrix.sum(axis=1)  # 2tp + fp + fn
    f1 = np.divide(2 * true_positives, denominator, out=np.zeros(n_classes), where=denominator > 0)
    return float(true_positives.sum() / max(n_samples, 1)), float(f1.mean())


# ----------------------------------------------------------------------------------------- the loop


class Trainer:
    """Trains one model under one config.

    Args:
        model: the network (takes standardized features, returns logits); moved to the device.
        config: the resolved job config.
        precision: device and mixed-precision settings (training.device.resolve_precision).
        sink: receives every metric (the tracker run).
        n_classes: number of classes.
        checkpoint_path: where checkpoints are written (atomically, on a background thread; `fit`
            returns once the last one is written); None disables checkpoints.
        on_checkpoint: called with the path after each checkpoint is written (e.g. to log it to the
            run), on the writer's thread.
        on_epoch_end: called with (epoch, that epoch's metrics) after each epoch is logged and judged,
            on the training thread; what it raises (a sweep's "prune this trial") ends the fit. In a
            data-parallel job every rank calls it at the same point, so it may run collectives.
        progress: show a tqdm bar; by default only when stdout is a terminal (and only on rank 0).
        world: this process's rank in a data-parallel job; default a lone process.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TorchTrainConfig,
        precision: Precision,
        sink: MetricsSink,
        n_classes: int,
        *,
        checkpoint_path: str | Path | None = None,
        on_checkpoint: Callable[[Path], None] | None = None,
        on_epoch_end: EpochCallback | None = None,
        progress: bool | None = None,
        world: World | None = None,
    ) -> None:
        self.config = config
        self.precision = precision
        self.world = world if world is not None else World()
        self.device = torch.device(precision.device)
        self.model = model.to(self.device)
        # What the training forward pass goes through (DDP on several ranks); `model` stays the bare
        # module, so checkpoints and the exported model do not depend on the world size.
        self.forward_model = wrap_model(self.model, self.world, self.device)
        self.sink = sink
        self.n_classes = n_classes
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self.on_checkpoint = on_checkpoint
        self.on_epoch_end = on_epoch_end
        self._writer: BackgroundCheckpointWriter | None = None
        self.progress = (sys.stdout.isatty() if progress is None else progress) and self.world.is_main
        self.loss_fn = build_loss(
            config.loss, label_smoothing=config.label_smoothing, focal_gamma=config.focal_gamma
        )
        self.optimizer = build_optimizer(config, self.model.parameters())
        self.scheduler = build_scheduler(config, self.optimizer)
        self.scaler = precision.grad_scaler()
        self.direction = metric_direction(config.early_stopping_metric)
        self.epoch = 0
        self.global_step = 0
        self.best_metric: float | None = None
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0
        self.stopped_early = False
        self.history: list[dict[str, float]] = []

    # ---------------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs, in `torch.load(weights_only=True)`-loadable form."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "rng": capture_rng_state(),
            "config": self.config.to_params(),
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "best_model": self.best_state,
            "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped_early,
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.best_metric = state["best_metric"]
        self.best_epoch = int(state["best_epoch"])
        self.best_state = state["best_model"]
        self.bad_epochs = int(state["bad_epochs"])
        self.stopped_early = bool(state["stopped_early"])
        self.history = list(state["history"])
        ranks = state.get("rng_ranks")
        if ranks is not None and len(ranks) == self.world.size:
            restore_rng_state(ranks[self.world.rank])
        else:
            restore_rng_state(state["rng"])
            if self.world.rank:  # a resume at another world size: a fresh stream of this rank's own
                torch.manual_seed(self.config.seed + self.world.rank)

    def _checkpoint(self) -> None:
        # Every rank's RNG state goes into the checkpoint (dropout draws differ per rank), so every
        # rank calls this; rank 0 alone has a path and writes.
        rng_ranks = self.world.gather_objects(capture_rng_state()) if self.world.distributed else None
        if self.checkpoint_path is None:
            return
        if self._writer is None:
            self._writer = BackgroundCheckpointWriter(self.on_checkpoint)
        state = self.state_dict()
        if rng_ranks is not None:
            state["rng_ranks"] = rng_ranks
        self._writer.submit(state, self.checkpoint_path)

    def wait_for_checkpoints(self) -> None:
        """Block until every checkpoint submitted so far is written and handed to `on_checkpoint`."""
        if self._writer is not None:
            self._writer.wait()

    # -------------------------------------------------------------------------------------- fitting

    @property
    def finished(self) -> bool:
        return self.stopped_early or self.epoch >= self.config.epochs

    def fit(self, train: TensorData, validation: TensorData) -> FitResult:
        """Train from the current state (fresh, or restored by `load_state_dict`) to the end."""
        if len(validation) == 0:
            raise ValueError("the loop needs a non-empty validation split (val_fraction > 0)")
        try:
            self._fit_epochs(train, validation)
        except BaseException:
            # Let written checkpoints land, but never hide the training error behind a writer error.
            with contextlib.suppress(Exception):
                self.wait_for_checkpoints()
            raise
        self.wait_for_checkpoints()
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return FitResult(
            model=self.model,
            best_epoch=self.best_epoch,
            best_metric=float("nan") if self.best_metric is None else float(self.best_metric),
            epochs_run=self.epoch,
            global_step=self.global_step,
            stopped_early=self.stopped_early,
            history=list(self.history),
        )

    def _fit_epochs(self, train: TensorData, validation: TensorData) -> None:
        while not self.finished:
            self.epoch += 1
            epoch_metrics = self._train_epoch(train)
            epoch_metrics.update(self.validate(validation))
            self._end_epoch(epoch_metrics)
            due = self.config.checkpoint_every and self.epoch % self.config.checkpoint_every == 0
            if due or self.finished:
                self._checkpoint()

    def _end_epoch(self, metrics: dict[str, float]) -> None:
        ordered = {name: float(metrics[name]) for name in EPOCH_METRICS}
        self.sink.log_metrics(ordered, step=self.epoch)
        self.history.append({"epoch": float(self.epoch), **ordered})
        monitored = ordered[self.config.early_stopping_metric]
        if is_better(self.direction, monitored, self.best_metric):
            self.best_metric, self.best_epoch, self.bad_epochs = monitored, self.epoch, 0
            self.best_state = {
                name: tensor.detach().cpu().clone() for name, tensor in self.model.state_dict().items()
            }
        else:
            self.bad_epochs += 1
        step_scheduler(self.scheduler, monitored)
        if self.config.patience and self.bad_epochs >= self.config.patience:
            self.stopped_early = True
        if self.on_epoch_end is not None:
            self.on_epoch_end(self.epoch, ordered)

    def _batches(
        self, data: TensorData, indices: torch.Tensor | None, batch_size: int, n_batches: int | None = None
    ):
        """Contiguous batches of the rows `indices` picks (all, in order, for None): one gather and one pin
        per epoch, not per batch. With `n_batches`, exactly that many (the last ones may be empty), so
        every rank steps in lockstep even when its shard is a sample short."""
        if indices is not None:
            features, targets = data.features[indices], data.targets[indices]
        else:
            features, targets = data.features, data.targets
        if self.precision.pin_memory:
            features, targets = features.pin_memory(), targets.pin_memory()
        non_blocking = self.precision.pin_memory
        if n_batches is None:
            n_batches = math.ceil(len(targets) / batch_size)
        for start in range(0, n_batches * batch_size, batch_size):
            yield (
                features[start : start + batch_size].to(self.device, non_blocking=non_blocking),
                targets[start : start + batch_size].to(self.device, non_blocking=non_blocking),
            )

    def _train_epoch(self, train: TensorData) -> dict[str, float]:
        config, world = self.config, self.world
        self.model.train()
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        n_samples = len(train)  # over all ranks
        n_batches = math.ceil(n_samples / config.batch_size)
        accumulation = config.grad_accumulation_steps
        scaler = self.scaler if self.scaler.is_enabled() else None
        bar = self._progress_bar(n_batches)
        self.optimizer.zero_grad(set_to_none=True)
        shard = shard_indices(n_samples, world, shuffle=True, seed=config.seed, epoch=self.epoch)
        batches = self._batches(train, shard, config.batch_size // world.size, n_batches)
        for index, (features, targets) in enumerate(batches):
            # Weight each rank's batch mean by its share of the samples in the accumulation group (over
            # all ranks; DDP's average divides by the world size, hence the factor), so the accumulated
            # gradient is the mean over the group, a short last batch or group included: exactly what
            # one batch of the group's size on one process would give.
            first = (index // accumulation) * accumulation * config.batch_size
            group = min(first + accumulation * config.batch_size, n_samples) - first
            share = len(targets) * world.size / group
            steps = (index + 1) % accumulation == 0 or index + 1 == n_batches
            # Between optimizer steps the ranks need not exchange gradients: DDP's no_sync.
            quiet = (
                contextlib.nullcontext() if steps or not world.distributed else self.forward_model.no_sync()
            )
            with quiet:
                with self.precision.autocast():
                    logits = self.forward_model(features)
                    # A rank whose shard ran out still takes part in the gradient exchange, with zeros.
                    loss = self.loss_fn(logits, targets) if len(targets) else logits.sum() * 0.0
                scaled = loss if share == 1.0 else loss * share
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            loss_sum.add_(loss.detach(), alpha=len(targets))
            correct += (logits.detach().argmax(dim=-1) == targets).sum()
            if steps:
                self._optimizer_step(scaler, loss, len(targets), bar=bar, done=index + 1, started=started)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        totals = world.all_reduce_sum(torch.stack([loss_sum.double(), correct.double()]))
        seconds = time.perf_counter() - started
        return {
            "train_loss": totals[0].item() / n_samples,
            "train_accuracy": totals[1].item() / n_samples,
            "epoch_seconds": seconds,
            "samples_per_sec": n_samples / seconds,
        }

    def _optimizer_step(
        self, scaler, loss: torch.Tensor, batch_samples: int, bar, done: int, started: float
    ) -> None:
        """Unscale, clip, step; log on logging steps. The gradient norm costs a pass over all
        gradients, so without clipping it is computed only when it is logged."""
        config = self.config
        logging_step = (self.global_step + 1) % config.log_every_n_steps == 0
        if scaler is not None:
            scaler.unscale_(self.optimizer)
        grad_norm = None
        if config.grad_clip_norm is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip_norm)
        elif logging_step:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), math.inf)
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        if not logging_step:
            return
        # The only per-step host sync, and only on logging steps.
        step_loss = self._batch_mean_loss(loss, batch_samples)
        self.sink.log_metrics(
            {
                "train_loss_step": step_loss,
                "lr": float(self.optimizer.param_groups[0]["lr"]),
                "grad_norm": grad_norm.item(),
            },
            step=self.global_step,
        )
        if bar is not None:
            rate = done * config.batch_size / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{step_loss:.4f}", samples_s=f"{rate:.0f}")

    def _batch_mean_loss(self, loss: torch.Tensor, batch_samples: int) -> float:
        """The mean loss of the last batch over all ranks (on one process: its own)."""
        if not self.world.distributed:
            return loss.item()
        count = torch.tensor(float(batch_samples), dtype=torch.float64, device=loss.device)
        sums = self.world.all_reduce_sum(torch.stack([loss.detach().double() * batch_samples, count]))
        return (sums[0] / sums[1]).item()

    def _progress_bar(self, total: int):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=f"epoch {self.epoch}/{self.config.epochs}", unit="batch", leave=False)

    # ------------------------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def validate(self, data: TensorData) -> dict[str, float]:
        """`val_loss`, `val_accuracy`, `val_f1_macro` over ALL of `data`: each rank scores its shard,
        and the loss sum and confusion matrix are summed over the ranks (one all-reduce)."""
        self.model.eval()
        shard = shard_indices(len(data), self.world, shuffle=False, seed=self.config.seed, epoch=0)
        n_classes = self.n_classes
        loss_sum = torch.zeros((), device=self.device)
        matrix = torch.zeros(n_classes * n_classes, device=self.device, dtype=torch.long)
        for features, targets in self._batches(data, shard, EVAL_BATCH_SIZE):
            with self.precision.autocast():
                logits = self.model(features)
                loss = self.loss_fn(logits, targets)
            loss_sum += loss.float() * len(targets)
            predictions = logits.float().argmax(dim=-1)
            matrix += torch.bincount(targets * n_classes + predictions, minlength=n_classes * n_classes)
        totals = torch.cat([loss_sum.double().reshape(1), matrix.double()])
        totals = self.world.all_reduce_sum(totals).cpu()
        confusion = totals[1:].numpy().astype(np.int64).reshape(n_classes, n_classes)
        accuracy, f1 = metrics_from_confusion(confusion, len(data))
        return {"val_loss": totals[0].item() / len(data), "val_accuracy": accuracy, "val_f1_macro": f1}

    @torch.no_grad()
    def evaluate(self, data: TensorData) -> Evaluation:
        """Mean loss, accuracy, macro F1, probabilities and predictions over `data` in eval mode, all on
        this process (the test set and the reports, which rank 0 makes alone)."""
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        probabilities = []
        for features, targets in self._batches(data, None, EVAL_BATCH_SIZE):
            with self.precision.autocast():
                logits = self.model(features)
                loss = self.loss_fn(logits, targets)
            loss_sum += loss.float() * len(targets)
            probabilities.append(torch.softmax(logits.float(), dim=-1).cpu())
        probs = torch.cat(probabilities).numpy()
        predictions = probs.argmax(axis=1)
        accuracy, f1 = accuracy_and_f1_macro(data.targets.numpy(), predictions, self.n_classes)
        return Evaluation(
            loss=loss_sum.item() / len(data),
            accuracy=accuracy,
            f1_macro=f1,
            probabilities=probs,
            predictions=predictions,
        )


# ----------------------------------------------------------------------------------- sanity check


def overfit_one_batch(
    model: nn.Module, config: TorchTrainConfig, precision: Precision, train: TensorData
) -> float:
    """Train a copy of `model` on the first batch until the loss is near zero; return the final loss.

    Uses the configured optimizer and lr with dropout off and plain cross entropy (label smoothing puts
    the minimum above zero). RNG states are restored afterwards, so a run with the check trains exactly
    like one without it.

    Raises:
        SanityCheckError: the loss is still above SANITY_LOSS_THRESHOLD after SANITY_MAX_STEPS steps.
    """
    rng = capture_rng_state()
    try:
        device = torch.device(precision.device)
        probe = copy.deepcopy(model).to(device).train()
        for module in probe.modules():
            if isinstance(module, nn.Dropout):
                module.eval()
        optimizer = build_optimizer(config, probe.parameters())
        features = train.features[: config.batch_size].to(device)
        targets = train.targets[: config.batch_size].to(device)
        loss_fn = nn.CrossEntropyLoss()
        first = last = float("nan")
        for step in range(SANITY_MAX_STEPS):
            optimizer.zero_grad(set_to_none=True)
            with precision.autocast():
                loss = loss_fn(probe(features), targets)
            loss.backward()
            optimizer.step()
            last = loss.item()
            if step == 0:
                first = last
            if last < SANITY_LOSS_THRESHOLD:
                return last
    finally:
        restore_rng_state(rng)
    raise SanityCheckError(
        f"sanity check failed: overfitting one batch of {len(targets)} samples took the loss "
        f"from {first:.4f} to {last:.4f} in {SANITY_MAX_STEPS} steps (needs < {SANITY_LOSS_THRESHOLD}); "
        f"check lr={config.lr}, optimizer={config.optimizer}, model={config.model} and the data"
    )
