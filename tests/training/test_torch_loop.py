"""The training loop on tiny real data (wine, a small MLP), with an in-memory metrics sink.

The loop's contract is what it reports and what it leaves behind, so the tests look at exactly that.
"""

from __future__ import annotations

import math

import pytest
import torch

from mlops_platform.config.train_torch import TorchTrainConfig
from mlops_platform.training.checkpoint import load_checkpoint
from mlops_platform.training.device import resolve_precision
from mlops_platform.training.torch_job import new_model, prepare_data
from mlops_platform.training.torch_loop import (
    EPOCH_METRICS,
    SanityCheckError,
    Trainer,
    overfit_one_batch,
    seed_everything,
)

TINY = {
    "dataset": "wine",
    "model": "mlp",
    "hidden_sizes": "16",
    "epochs": 6,
    "batch_size": 16,
    "dropout": 0.1,
}


class ListSink:
    """Keeps every (step, metrics) call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.calls.append((step, dict(metrics)))

    def series(self, name: str) -> list[tuple[int, float]]:
        return [(step, metrics[name]) for step, metrics in self.calls if name in metrics]


def make_trainer(tmp_path=None, sink=None, on_epoch_end=None, **overrides):
    config = TorchTrainConfig.parse({**TINY, **overrides})
    prepared = prepare_data(config)
    seed_everything(config.seed, config.deterministic, "cpu")
    model = new_model(config, prepared)
    trainer = Trainer(
        model,
        config,
        resolve_precision("cpu", "auto"),
        sink if sink is not None else ListSink(),
        prepared.dataset.n_classes,
        checkpoint_path=None if tmp_path is None else tmp_path / "last.pt",
        progress=False,
        on_epoch_end=on_epoch_end,
    )
    return trainer, prepared


def deterministic_values(sink: ListSink) -> list[tuple[int, dict[str, float]]]:
    """All logged values except wall-clock ones."""
    return [
        (step, {k: v for k, v in metrics.items() if k not in ("epoch_seconds", "samples_per_sec")})
        for step, metrics in sink.calls
    ]


def test_metrics_are_logged_with_the_right_names_and_steps():
    trainer, prepared = make_trainer(epochs=3, log_every_n_steps=2)
    result = trainer.fit(prepared.train, prepared.validation)
    sink = trainer.sink
    steps_per_epoch = math.ceil(len(prepared.train) / 16)
    assert [step for step, _ in sink.series("train_loss_step")] == list(range(2, 3 * steps_per_epoch + 1, 2))
    assert {name for _, metrics in sink.calls if "lr" in metrics for name in metrics} == {
        "train_loss_step",
        "lr",
        "grad_norm",
    }
    epoch_calls = [(step, metrics) for step, metrics in sink.calls if "train_loss" in metrics]
    assert [step for step, _ in epoch_calls] == [1, 2, 3]
    assert all(list(metrics) == list(EPOCH_METRICS) for _, metrics in epoch_calls)
    assert all(
        0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["samples_per_sec"] > 0 for _, metrics in epoch_calls
    )
    assert result.global_step == 3 * steps_per_epoch and result.epochs_run == 3
    # Training works: the model beats chance on validation by far.
    assert trainer.evaluate(prepared.validation).accuracy > 0.8


def test_same_seed_gives_identical_metrics_and_another_seed_does_not():
    first, prepared = make_trainer()
    first.fit(prepared.train, prepared.validation)
    second, prepared = make_trainer()
    second.fit(prepared.train, prepared.validation)
    assert deterministic_values(first.sink) == deterministic_values(second.sink)
    assert (first.evaluate(prepared.test).probabilities == second.evaluate(prepared.test).probabilities).all()
    other, prepared = make_trainer(seed=1)
    other.fit(prepared.train, prepared.validation)
    assert deterministic_values(other.sink) != deterministic_values(first.sink)


def test_resume_from_a_checkpoint_ends_exactly_like_an_uninterrupted_fit(tmp_path):
    overrides = {"checkpoint_every": 1, "scheduler": "step", "lr_step_size": 2, "optimizer": "adam"}
    straight, prepared = make_trainer(tmp_path / "straight", **overrides)
    straight.fit(prepared.train, prepared.validation)

    # Interrupted: stop after epoch 3 by limiting the epochs, keep that checkpoint.
    head, prepared = make_trainer(tmp_path / "head", **overrides)
    original_epochs = head.config.epochs
    head.config = head.config.model_copy(update={"epochs": 3})
    head.fit(prepared.train, prepared.validation)
    state = load_checkpoint(tmp_path / "head" / "last.pt")
    assert state["epoch"] == 3 and state["config"]["epochs"] == 3

    tail_sink = ListSink()
    tail, prepared = make_trainer(tmp_path / "tail", sink=tail_sink, **overrides)
    torch.manual_seed(999)  # whatever the global RNG holds now, the checkpoint's state replaces it
    tail.load_state_dict(state)
    tail.config = tail.config.model_copy(update={"epochs": original_epochs})
    tail.fit(prepared.train, prepared.validation)

    combined = deterministic_values(head.sink) + deterministic_values(tail_sink)
    assert combined == deterministic_values(straight.sink)
    assert torch.equal(
        torch.as_tensor(tail.evaluate(prepared.test).probabilities),
        torch.as_tensor(straight.evaluate(prepared.test).probabilities),
    )


class StopTraining(Exception):
    pass


def test_epoch_callback_sees_each_logged_epoch_and_can_end_the_fit(tmp_path):
    seen: list[tuple[int, dict[str, float]]] = []

    def watch(epoch: int, metrics: dict[str, float]) -> None:
        seen.append((epoch, dict(metrics)))
        if epoch == 2:
            raise StopTraining  # what a sweep's pruner does

    trainer, prepared = make_trainer(tmp_path, on_epoch_end=watch, epochs=5, checkpoint_every=1)
    with pytest.raises(StopTraining):
        trainer.fit(prepared.train, prepared.validation)
    epoch_calls = [(step, metrics) for step, metrics in trainer.sink.calls if "train_loss" in metrics]
    # The callback gets exactly what was logged for each epoch, and nothing trains after it raises.
    assert seen == epoch_calls[:2] and len(epoch_calls) == 2 and trainer.epoch == 2
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1  # written checkpoints still land


def test_early_stopping_keeps_the_best_epoch_weights():
    # lr so high that validation loss gets worse after the first epochs.
    trainer, prepared = make_trainer(epochs=30, patience=2, lr=0.5, optimizer="sgd", scheduler="none")
    result = trainer.fit(prepared.train, prepared.validation)
    assert result.stopped_early and result.epochs_run < 30
    assert result.epochs_run == result.best_epoch + 2
    val_losses = [row["val_loss"] for row in result.history]
    assert result.best_metric == min(val_losses) == val_losses[result.best_epoch - 1]
    # The returned model is the best epoch's, not the last one's.
    assert trainer.evaluate(prepared.validation).loss == pytest.approx(result.best_metric, rel=1e-6)


def test_gradient_accumulation_matches_a_larger_batch():
    # No dropout: two accumulated batches of 8 give the same update as one batch of 16 (up to rounding).
    common = {"dropout": 0.0, "epochs": 2, "optimizer": "sgd", "scheduler": "none", "log_every_n_steps": 1}
    small, prepared = make_trainer(batch_size=8, grad_accumulation_steps=2, **common)
    big, _ = make_trainer(batch_size=16, **common)
    # The sample order is a function of seed and epoch alone (DistributedSampler), not of the batch size.
    for trainer in (small, big):
        trainer.fit(prepared.train, prepared.validation)
    assert small.global_step == big.global_step
    for a, b in zip(small.model.parameters(), big.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_gradient_clipping_bounds_the_update():
    # The logged grad_norm is the norm before clipping; with clipping the applied step is bounded.
    trainer, prepared = make_trainer(
        epochs=1,
        optimizer="sgd",
        momentum=0.0,
        weight_decay=0.0,
        lr=1.0,
        grad_clip_norm=0.01,
        log_every_n_steps=1,
    )
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.config = trainer.config.model_copy(update={"batch_size": len(prepared.train)})
    trainer.fit(prepared.train, prepared.validation)
    step = torch.sqrt(
        sum(((p - b) ** 2).sum() for p, b in zip(trainer.model.parameters(), before, strict=True))
    )
    assert trainer.sink.series("grad_norm")[0][1] > 0.01
    assert step.item() == pytest.approx(0.01, rel=1e-3)


def test_sanity_check_passes_on_a_sound_setup_and_fails_fast_on_a_broken_one():
    trainer, prepared = make_trainer()
    config = trainer.config
    state_before = torch.get_rng_state()
    loss = overfit_one_batch(trainer.model, config, resolve_precision("cpu", "off"), prepared.train)
    assert loss < 0.05
    assert torch.equal(torch.get_rng_state(), state_before)  # the check leaves the RNG as it found it
    broken = config.model_copy(update={"lr": 1e-7, "optimizer": "sgd"})
    with pytest.raises(SanityCheckError, match="lr=1e-07"):
        overfit_one_batch(trainer.model, broken, resolve_precision("cpu", "off"), prepared.train)


def test_progress_bar_is_quiet_when_stdout_is_not_a_terminal(capsys):
    trainer, prepared = make_trainer(epochs=1)
    config = trainer.config
    quiet = Trainer(
        trainer.model, config, resolve_precision("cpu", "off"), ListSink(), prepared.dataset.n_classes
    )
    assert quiet.progress is False  # pytest captures stdout: not a TTY
    quiet.fit(prepared.train, prepared.validation)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
