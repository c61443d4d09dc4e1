"""Unit tests of the PyTorch trainer's parts: losses, models, schedulers, device/AMP selection (the config's
own checks: tests/config/test_train_torch.py).

No GPU here: the CUDA branches of device selection are exercised through the `cuda_available` /
`bf16_supported` parameters, which is all of their logic short of running a kernel.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mlops_platform.config.train_torch import TorchTrainConfig
from mlops_platform.errors import UserError
from mlops_platform.evaluation import classification_metrics
from mlops_platform.training.device import resolve_device, resolve_precision
from mlops_platform.training.losses import FocalLoss, build_loss
from mlops_platform.training.models import CNN, MLP, ExportedClassifier, Standardizer, build_model
from mlops_platform.training.torch_loop import (
    accuracy_and_f1_macro,
    build_optimizer,
    build_scheduler,
    step_scheduler,
)

# ------------------------------------------------------------------------------------------- losses


def test_cross_entropy_label_smoothing_matches_its_definition():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    targets = torch.tensor([0, 2])
    smoothing = 0.2
    loss = build_loss("cross_entropy", label_smoothing=smoothing)(logits, targets)
    log_probs = torch.log_softmax(logits, dim=-1)
    soft = torch.full_like(log_probs, smoothing / 3)
    soft[torch.arange(2), targets] += 1 - smoothing
    assert loss.item() == pytest.approx(-(soft * log_probs).sum(dim=1).mean().item(), rel=1e-6)
    # Smoothing keeps the loss of a perfectly confident right answer above zero.
    confident = torch.tensor([[50.0, 0.0, 0.0]])
    assert build_loss("cross_entropy", label_smoothing=0.1)(confident, torch.tensor([0])).item() > 0.1
    assert build_loss("cross_entropy")(confident, torch.tensor([0])).item() < 1e-6


def test_focal_loss_is_cross_entropy_at_gamma_zero_and_down_weights_easy_examples():
    logits = torch.tensor([[4.0, 0.0], [0.2, 0.0], [0.0, 1.0]])
    targets = torch.tensor([0, 0, 0])
    ce = nn.functional.cross_entropy(logits, targets)
    assert FocalLoss(0.0)(logits, targets).item() == pytest.approx(ce.item(), rel=1e-6)
    per_ce = nn.functional.cross_entropy(logits, targets, reduction="none")
    p_t = torch.exp(-per_ce)
    expected = ((1 - p_t) ** 2 * per_ce).mean()
    assert FocalLoss(2.0)(logits, targets).item() == pytest.approx(expected.item(), rel=1e-6)
    # The easy example (p_t ~ 0.98) loses far more weight than the hard one.
    easy, hard = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    label = torch.tensor([0])
    ratio_easy = FocalLoss(2.0)(easy, label) / nn.functional.cross_entropy(easy, label)
    ratio_hard = FocalLoss(2.0)(hard, label) / nn.functional.cross_entropy(hard, label)
    assert ratio_easy < 0.01 < 0.5 < ratio_hard


def test_focal_loss_gradient_flows_and_rejects_negative_gamma():
    logits = torch.randn(8, 4, requires_grad=True)
    build_loss("focal", focal_gamma=1.5)(logits, torch.randint(0, 4, (8,))).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(-1.0)
    with pytest.raises(ValueError, match="hinge"):
        build_loss("hinge")


# ------------------------------------------------------------------------------------------- models


def test_mlp_and_cnn_shapes_and_cnn_rejects_tabular_data():
    mlp = build_model("mlp", 30, 2, hidden_sizes=(16, 8), dropout=0.2)
    assert isinstance(mlp, MLP) and mlp(torch.randn(5, 30)).shape == (5, 2)
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [16, 8, 2]
    cnn = build_model("cnn", 64, 10, channels=(8, 16), dropout=0.1, image_shape=(8, 8))
    assert isinstance(cnn, CNN) and cnn(torch.randn(3, 64)).shape == (3, 10)
    with pytest.raises(ValueError, match="model=cnn needs image data"):
        build_model("cnn", 30, 2, image_shape=None)


def test_exported_classifier_standardizes_raw_features_and_returns_probabilities():
    rng = np.random.default_rng(0)
    raw = rng.normal(5.0, 3.0, size=(50, 4)).astype(np.float32)
    raw[:, 3] = 7.0  # a constant column must not produce inf/nan
    standardizer = Standardizer.fit(raw)
    scaled = standardizer(torch.from_numpy(raw))
    assert torch.allclose(scaled[:, :3].mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(scaled[:, :3].std(0, unbiased=False), torch.ones(3), atol=1e-4)
    assert torch.equal(scaled[:, 3], torch.zeros(50))
    network = build_model("mlp", 4, 3, hidden_sizes=(8,))
    exported = ExportedClassifier(standardizer, network).eval()
    probabilities = exported(torch.from_numpy(raw))
    assert probabilities.shape == (50, 3)
    assert torch.allclose(probabilities.sum(1), torch.ones(50), atol=1e-6)
    expected = torch.softmax(network(scaled), dim=-1)
    assert torch.allclose(probabilities, expected, atol=1e-6)
    # The statistics travel with the module (buffers in its state dict).
    assert {"standardizer.mean", "standardizer.scale"} <= set(exported.state_dict())


# --------------------------------------------------------------------------------------- schedulers


def _lrs(
    scheduler_name: str, epochs: int = 6, monitored: list[float] | None = None, **overrides
) -> list[float]:
    config = TorchTrainConfig.parse({"scheduler": scheduler_name, "epochs": epochs, "lr": 1.0, **overrides})
    optimizer = build_optimizer(config, [nn.Parameter(torch.zeros(1))])
    scheduler = build_scheduler(config, optimizer)
    rates = []
    for epoch in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        step_scheduler(scheduler, monitored[epoch] if monitored else 0.0)
    return rates


def test_scheduler_none_keeps_lr():
    assert _lrs("none") == [1.0] * 6


def test_scheduler_step_decays_every_step_size_epochs():
    assert _lrs("step", lr_step_size=2, lr_gamma=0.5) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_scheduler_cosine_anneals_to_zero_over_the_epochs():
    rates = _lrs("cosine", epochs=4)
    assert rates == pytest.approx([0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)])


def test_scheduler_plateau_decays_only_after_patience_epochs_without_improvement():
    # val_loss improves, then stalls: with patience 1 the LR halves after two non-improving epochs.
    rates = _lrs("plateau", monitored=[1.0, 0.5, 0.6, 0.6, 0.6, 0.6], plateau_patience=1, lr_gamma=0.5)
    assert rates == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
    # With a "max" metric, rising values are improvements.
    rates = _lrs(
        "plateau",
        monitored=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        plateau_patience=1,
        early_stopping_metric="val_accuracy",
    )
    assert rates == [1.0] * 6


@pytest.mark.parametrize(
    ("name", "cls"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)]
)
def test_optimizers(name, cls):
    config = TorchTrainConfig.parse({"optimizer": name, "lr": 0.5, "momentum": 0.8, "weight_decay": 0.01})
    optimizer = build_optimizer(config, [nn.Parameter(torch.zeros(1))])
    assert type(optimizer) is cls
    assert optimizer.param_groups[0]["lr"] == 0.5 and optimizer.param_groups[0]["weight_decay"] == 0.01
    if name == "sgd":
        assert optimizer.param_groups[0]["momentum"] == 0.8


# ----------------------------------------------------------------------------------------- device


def test_device_selection():
    assert resolve_device("auto", cuda_available=False) == "cpu"
    assert resolve_device("auto", cuda_available=True) == "cuda"
    assert resolve_device("cpu", cuda_available=True) == "cpu"
    with pytest.raises(UserError, match="device=cuda"):
        resolve_device("cuda", cuda_available=False)
    # This machine: no GPU, so auto must land on the CPU.
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_amp_selection():
    cpu = resolve_precision("cpu", "auto")
    assert (cpu.amp_dtype, cpu.use_grad_scaler, cpu.pin_memory, cpu.amp_name) == (None, False, False, "off")
    with pytest.raises(UserError, match="amp=fp16 needs a CUDA device"):
        resolve_precision("cpu", "fp16")
    ampere = resolve_precision("cuda", "auto", bf16_supported=True)
    assert (ampere.amp_dtype, ampere.use_grad_scaler, ampere.pin_memory) == (torch.bfloat16, False, True)
    older = resolve_precision("cuda", "auto", bf16_supported=False)
    assert (older.amp_dtype, older.use_grad_scaler) == (torch.float16, True)
    assert resolve_precision("cuda", "off", bf16_supported=True).amp_dtype is None
    with pytest.raises(UserError, match="bfloat16"):
        resolve_precision("cuda", "bf16", bf16_supported=False)
    # The CPU path runs for real: no autocast, a disabled (pass-through) scaler.
    scaler = cpu.grad_scaler()
    assert not scaler.is_enabled()
    loss = torch.tensor(2.0, requires_grad=True)
    assert scaler.scale(loss) is loss


def test_loop_metrics_equal_the_shared_evaluation_metrics():
    rng = np.random.default_rng(0)
    for n_classes in (2, 5):
        targets = rng.integers(0, n_classes, 300)
        predictions = np.where(rng.random(300) < 0.7, targets, rng.integers(0, n_classes, 300))
        predictions[predictions == n_classes - 1] = 0  # a class never predicted: its F1 is 0
        accuracy, f1 = accuracy_and_f1_macro(targets, predictions, n_classes)
        shared = classification_metrics(targets, predictions, labels=list(range(n_classes)))
        assert accuracy == pytest.approx(shared["accuracy"], abs=1e-12)
        assert f1 == pytest.approx(shared["f1_macro"], abs=1e-12)


# ------------------------------------------------------------------------------------- checkpoints


def test_a_damaged_or_incomplete_checkpoint_is_a_clear_error_not_a_traceback(tmp_path):
    from click.testing import CliRunner

    from mlops_platform.cli import cli
    from mlops_platform.training import torch_job
    from mlops_platform.training.checkpoint import CheckpointError, serialize_checkpoint

    run_id = "0123456789abcdef0123456789abcdef"
    local = torch_job.checkpoint_path(run_id)
    local.parent.mkdir(parents=True)
    local.write_bytes(serialize_checkpoint({"epoch": 3})[:200])  # torn copy
    with pytest.raises(CheckpointError, match=f"resume_from='{run_id}': checkpoint .* cannot be read"):
        torch_job.fetch_checkpoint(run_id)
    result = CliRunner().invoke(cli, ["train", "torch", "--resume-from", run_id])
    assert result.exit_code == 1 and "damaged or not a checkpoint" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    local.write_bytes(serialize_checkpoint({"epoch": 3}))  # whole, but not what a resume reads
    with pytest.raises(CheckpointError, match="incomplete: no model, optimizer"):
        torch_job.fetch_checkpoint(run_id)
