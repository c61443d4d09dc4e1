"""Training throughput: our loop with full tracking against a bare hand-written PyTorch loop, same model,
same data, same batches, in one run against a real local tracking server.

    .venv/bin/python benchmarks/training_throughput.py [--tracking-uri URI] [--epochs N] [--repeats N]

Rows (train samples per second over whole fits, the validation pass of every epoch included; median
of --repeats, variants interleaved so machine load hits all alike), per second of wall time and per
second of this process's CPU time (all its threads; robust to other load on a shared machine):
- bare:         a hand-written loop, no tracking at all (the reference, 1.00x);
- plain mlflow: the same loop, logging the same metrics with synchronous `MlflowClient.log_batch`
                and uploading a checkpoint with `log_artifact`, as a script using MLflow directly would;
- ours:         `Trainer` (torch_loop) reporting to a `Tracker` run as the job does: step metrics every
                log_every_n_steps, epoch metrics, an atomic checkpoint every checkpoint_every epochs
                and at the end, written and uploaded to the run on a background thread (the clock
                stops once the last one is on the server).
Target: ours >= 0.95x bare. Without --tracking-uri a SQLite-backed server is started in a temp folder.

    .venv/bin/python benchmarks/training_throughput.py --data-parallel 1,2 [--models mlp] [--epochs N]

Data parallel: the same job's loop (`Trainer`, same global batch) on 1 and on 2 torchrun processes
(gloo on CPU, one torch thread each), train samples per second of wall time on rank 0, median of
--repeats. It prints the machine's core count and load: on a machine with fewer free cores than
processes, more processes cannot be faster.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from mlops_platform.config.train_torch import TorchTrainConfig
from mlops_platform.server import throwaway_server_unless
from mlops_platform.training.device import configure_cpu_threads, resolve_precision
from mlops_platform.training.torch_job import new_model, prepare_data
from mlops_platform.training.torch_loop import TensorData, Trainer, seed_everything


def bare_loop(
    model: nn.Module,
    config: TorchTrainConfig,
    train: TensorData,
    validation: TensorData,
    log: Callable | None,
) -> None:
    """What one writes by hand: shuffle, batches, AdamW + cosine, a validation pass per epoch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(config.seed)
    step = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=generator)
        features, targets = train.features[order], train.targets[order]
        for start in range(0, len(targets), config.batch_size):
            x, y = features[start : start + config.batch_size], targets[start : start + config.batch_size]
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            logging = log is not None and (step + 1) % config.log_every_n_steps == 0
            if logging:
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
            optimizer.step()
            step += 1
            if logging:
                metrics = {
                    "train_loss_step": loss.item(),
                    "lr": scheduler.get_last_lr()[0],
                    "grad_norm": grad_norm.item(),
                }
                log(metrics, step)
        scheduler.step()
        model.eval()
        with torch.no_grad():
            logits = model(validation.features)
            val_loss = loss_fn(logits, validation.targets).item()
            val_accuracy = (logits.argmax(1) == validation.targets).float().mean().item()
        if log is not None:
            log({"val_loss": val_loss, "val_accuracy": val_accuracy}, epoch, checkpoint=model)


def plain_mlflow_logger(client, run_id: str, folder: Path) -> Callable:
    from mlflow.entities import Metric

    def log(metrics: dict, step: int, checkpoint: nn.Module | None = None) -> None:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])
        if checkpoint is not None:
            path = folder / "last.pt"
            torch.save(checkpoint.state_dict(), path)
            client.log_artifact(run_id, str(path), "checkpoints")

    return log


class Clock:
    """Wall time and this process's CPU time (all threads: the tracker's sender and the checkpoint
    writer are charged to ours). On a shared machine wall time swings with other people's load; CPU
    time is what the loop itself costs."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def rates(self, samples: int) -> tuple[float, float]:
        return samples / (time.perf_counter() - self.wall), samples / (time.process_time() - self.cpu)


def measure(kind: str, config: TorchTrainConfig, uri: str, experiment: str) -> tuple[float, float]:
    """Train samples per second of wall time and of process CPU time, of one full fit."""
    prepared = prepare_data(config)
    seed_everything(config.seed, config.deterministic, "cpu")
    model = new_model(config, prepared)
    samples = config.epochs * len(prepared.train)
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "bare":
            clock = Clock()
            bare_loop(model, config, prepared.train, prepared.validation, None)
            return clock.rates(samples)
        if kind == "plain mlflow":
            from mlflow import MlflowClient

            client = MlflowClient(uri)
            experiment_id = client.get_experiment_by_name(experiment).experiment_id
            run_id = client.create_run(experiment_id, run_name="plain-mlflow").info.run_id
            clock = Clock()
            bare_loop(
                model,
                config,
                prepared.train,
                prepared.validation,
                plain_mlflow_logger(client, run_id, Path(tmp)),
            )
            rates = clock.rates(samples)
            client.set_terminated(run_id)
            return rates
        from mlops_platform.tracking import Tracker

        tracker = Tracker(uri, replay_on_start=False)
        with tracker.run(experiment=experiment, run_name="ours", use_env_run=False) as run:
            trainer = Trainer(
                model,
                config,
                resolve_precision("cpu", "off"),
                run,
                prepared.dataset.n_classes,
                checkpoint_path=Path(tmp) / "last.pt",
                on_checkpoint=lambda path: run.log_artifact(path, "checkpoints"),
                progress=False,
            )
            clock = Clock()
            trainer.fit(prepared.train, prepared.validation)  # returns once the last checkpoint is uploaded
            return clock.rates(samples)


def data_parallel_worker(model: str, epochs: int) -> None:
    """One rank under torchrun: a full fit of the job's loop, no tracking; rank 0 prints its rate."""
    import json

    from mlops_platform.training.distributed import World, process_group

    world = World.from_env()
    config = TorchTrainConfig.parse({"epochs": epochs, "patience": 0, "model": model})
    with process_group(world, "cpu"):
        prepared = prepare_data(config)
        configure_cpu_threads(config.cpu_threads)
        seed_everything(config.seed, config.deterministic, "cpu")
        trainer = Trainer(
            new_model(config, prepared),
            config,
            resolve_precision("cpu", "off"),
            _Discard(),
            prepared.dataset.n_classes,
            progress=False,
            world=world,
        )
        world.all_reduce_sum(torch.zeros(1))  # start the clock together
        clock = Clock()
        trainer.fit(prepared.train, prepared.validation)
        wall, _ = clock.rates(config.epochs * len(prepared.train))
    if world.is_main:
        print(json.dumps({"samples_per_sec": wall}), flush=True)


class _Discard:
    def log_metrics(self, metrics: dict, step: int) -> None:
        pass


def data_parallel(processes: list[int], models: list[str], epochs: int, repeats: int) -> None:
    import json
    import os
    import subprocess

    cores = os.cpu_count()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"data parallel on {cores} cores (load average {load}); {epochs} epochs x {repeats} repeats")
    print("\n{:<10} {:>10} {:>16} {:>12}".format("model", "processes", "samples/s wall", "vs 1 proc"))
    for model in models:
        rates: dict[int, list[float]] = {count: [] for count in processes}
        for _ in range(repeats):
            for count in processes:
                command = [
                    sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc-per-node", str(count), __file__,
                    "--data-parallel-worker", "--models", model, "--epochs", str(epochs),
                ]  # fmt: skip
                result = subprocess.run(command, capture_output=True, text=True, check=True)
                line = [row for row in result.stdout.splitlines() if row.startswith("{")][-1]
                rates[count].append(json.loads(line)["samples_per_sec"])
        base = statistics.median(rates[processes[0]])
        for count in processes:
            rate = statistics.median(rates[count])
            print(f"{model:<10} {count:>10} {rate:>16.0f} {rate / base:>11.2f}x")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="cnn,mlp", help="which of cnn (the default model), mlp")
    parser.add_argument(
        "--data-parallel", default=None, help="compare these process counts, e.g. 1,2 (no tracking)"
    )
    parser.add_argument("--data-parallel-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.data_parallel_worker:
        data_parallel_worker(args.models, args.epochs)
        return
    if args.data_parallel:
        counts = [int(count) for count in args.data_parallel.split(",")]
        data_parallel(counts, args.models.split(","), args.epochs, args.repeats)
        return
    models = {
        label: values
        for label, values in {"cnn (default)": {"model": "cnn"}, "mlp 128,64": {"model": "mlp"}}.items()
        if values["model"] in args.models.split(",")
    }
    kinds = ("bare", "plain mlflow", "ours")
    with throwaway_server_unless(args.tracking_uri) as uri:
        from mlflow import MlflowClient

        experiment = f"training-throughput-{int(time.time())}"
        MlflowClient(uri).create_experiment(experiment)
        print(
            f"tracking server: {uri}; experiment {experiment}; {args.epochs} epochs x {args.repeats} repeats"
        )
        rows = []
        for label, values in models.items():
            # A default run's settings (checkpoint every 5 epochs, metrics every 10 steps), except no early
            # stop, so every variant trains all epochs.
            config = TorchTrainConfig.parse({"epochs": args.epochs, "patience": 0, **values})
            configure_cpu_threads(config.cpu_threads)
            results: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
            measure("bare", config, uri, experiment)  # warm-up: first-call costs of torch and the server
            for repeat in range(args.repeats):
                # Rotate the order, so no variant always runs right after the same neighbour.
                for kind in kinds[repeat % len(kinds) :] + kinds[: repeat % len(kinds)]:
                    results[kind].append(measure(kind, config, uri, experiment))
            bare_wall = statistics.median(wall for wall, _ in results["bare"])
            bare_cpu = statistics.median(cpu for _, cpu in results["bare"])
            for kind in kinds:
                wall = statistics.median(w for w, _ in results[kind])
                cpu = statistics.median(c for _, c in results[kind])
                rows.append((label, kind, wall, wall / bare_wall, cpu, cpu / bare_cpu))
        columns = ("model", "loop", "samples/s wall", "vs bare", "samples/cpu-s", "vs bare")
        print("\n{:<14} {:<13} {:>14} {:>8} {:>14} {:>8}".format(*columns))
        for label, kind, wall, wall_ratio, cpu, cpu_ratio in rows:
            print(f"{label:<14} {kind:<13} {wall:>14.0f} {wall_ratio:>7.2f}x {cpu:>14.0f} {cpu_ratio:>7.2f}x")
        for column, name in ((3, "wall"), (5, "cpu")):
            worst = min(row[column] for row in rows if row[1] == "ours")
            verdict = "met" if worst >= 0.95 else "NOT met"
            print(f"ours vs bare by {name} time (worst model): {worst:.2f}x; target >= 0.95x: {verdict}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
