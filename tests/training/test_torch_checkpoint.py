"""Checkpoints: atomic replacement, safe loading, and RNG state round trips."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from mlops_platform.training.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def test_checkpoint_loads_with_weights_only_and_keeps_everything(tmp_path):
    state = {
        "model": {"w": torch.arange(6.0).reshape(2, 3)},
        "epoch": 3,
        "best_metric": 0.25,
        "config": {"model": "mlp", "grad_clip_norm": None},
        "history": [{"epoch": 1.0, "val_loss": 0.5}],
        "rng": capture_rng_state(),
    }
    path = save_checkpoint(state, tmp_path / "ckpt" / "last.pt")
    # The strict unpickler: no classes, only tensors and plain containers.
    raw = torch.load(path, weights_only=True)
    assert raw["epoch"] == 3 and raw["config"] == {"model": "mlp", "grad_clip_norm": None}
    loaded = load_checkpoint(path, required=("model", "epoch", "config", "history", "rng"))
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert loaded["history"] == state["history"]
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint({"epoch": 2, "bad": Unpicklable()}, path)
    assert load_checkpoint(path, required=("epoch",))["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


def test_rng_state_round_trip_reproduces_every_generator(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leave a cached gaussian in numpy's legacy state
    save_checkpoint({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.normal(), np.random.rand(), torch.rand(3))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt", required=("rng",))["rng"])
    again = (random.random(), np.random.normal(), np.random.rand(), torch.rand(3))
    assert expected[:3] == again[:3]
    assert torch.equal(expected[3], again[3])


def test_wrong_format_version_is_rejected(tmp_path):
    torch.save({"format_version": 999}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="format version 999"):
        load_checkpoint(tmp_path / "old.pt")


def test_background_writer_writes_in_order_calls_back_and_reports_errors(tmp_path):
    from mlops_platform.training.checkpoint import BackgroundCheckpointWriter

    seen = []
    writer = BackgroundCheckpointWriter(
        lambda path: seen.append(load_checkpoint(path, required=("epoch",))["epoch"])
    )
    tensor = torch.zeros(3)
    for epoch in (1, 2, 3):
        tensor += 1
        writer.submit({"epoch": epoch, "weights": tensor}, tmp_path / "last.pt")
    tensor += 100  # the submitted snapshots must not see later in-place changes
    writer.wait()
    assert seen == [1, 2, 3]
    assert torch.equal(load_checkpoint(tmp_path / "last.pt", required=())["weights"], torch.full((3,), 3.0))

    def fail(path):
        raise OSError("upload refused")

    failing = BackgroundCheckpointWriter(fail)
    failing.submit({"epoch": 1}, tmp_path / "other.pt")
    with pytest.raises(OSError, match="upload refused"):
        failing.wait()
