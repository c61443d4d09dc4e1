"""The config of the PyTorch trainer (`mlflow run . -e train_torch`, `mlops train torch`).

The only place its defaults live: MLproject and the CLI options are generated from this class. The
defaults train a CNN on digits to >= 0.985 test accuracy in well under two minutes on two CPU cores.
Every rule that can be checked without loading data is checked here, so a bad value fails before any
tracking run exists.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlops_platform.config.base import registrable_model_name
from mlops_platform.config.table import TableConfig

# Datasets whose rows are flattened images, so a CNN can take them (see data.load_dataset's image_shape).
IMAGE_DATASETS: tuple[str, ...] = ("digits",)
TORCH_DATASETS: tuple[str, ...] = ("digits", "breast_cancer", "wine")
TABLE_PREFIXES: tuple[str, ...] = ("csv:", "parquet:")
# The params that say how the job is launched, not how the model is made: a resume keeps the given ones.
LAUNCH_FIELDS: tuple[str, ...] = ("nproc_per_node", "nnodes", "node_rank", "rdzv_endpoint", "max_restarts")
# MLflow's run ids: a uuid4 in hex, as the UI and every client show them.
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_HOST_PORT = re.compile(r"^\[?[A-Za-z0-9_.:-]+\]?:\d{1,5}$")
MONITOR_METRICS: tuple[str, ...] = ("val_loss", "val_accuracy", "val_f1_macro")
# Fields that mean something only for some values of another field: field -> (that field, its values).
# A run's params leave the others out (its config.json keeps them).
CONDITIONAL_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "hidden_sizes": ("model", ("mlp",)),
    "channels": ("model", ("cnn",)),
    "momentum": ("optimizer", ("sgd",)),
    "lr_step_size": ("scheduler", ("step",)),
    "lr_gamma": ("scheduler", ("step", "plateau")),
    "plateau_patience": ("scheduler", ("plateau",)),
    "label_smoothing": ("loss", ("cross_entropy",)),
    "focal_gamma": ("loss", ("focal",)),
}


def parse_sizes(text: str, name: str) -> tuple[int, ...]:
    """ "128,64" -> (128, 64); raises ValueError naming the parameter for anything else."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(
            f"{name}={text!r} must be comma-separated positive integers, e.g. '128,64'"
        ) from None
    if not sizes or any(size <= 0 for size in sizes):
        raise ValueError(f"{name}={text!r} must be comma-separated positive integers, e.g. '128,64'")
    return sizes


class TorchTrainConfig(TableConfig):
    """Train a PyTorch classifier (MLP or CNN) with full tracking, checkpoints and exact resume."""

    # data (and, from TableConfig, the column roles and preprocessing of a csv/parquet table)
    dataset: str = Field(
        "digits", description="digits | breast_cancer | wine | csv:<path> | parquet:<path> (with target)."
    )
    target: str | None = Field(None, description="Label column of a csv:<path> or parquet:<path> dataset.")
    val_fraction: float = Field(0.1, description="Fraction of rows for validation (stratified).")
    test_fraction: float = Field(0.2, description="Fraction of rows for the final test (stratified).")
    seed: int = Field(0, description="Seeds python, numpy, torch and the data split.")
    deterministic: bool = Field(True, description="Use deterministic algorithms (CPU: bit-exact reruns).")

    # model
    model: Literal["mlp", "cnn"] = Field("cnn", description="mlp (any data) or cnn (image data: digits).")
    hidden_sizes: str = Field("128,64", description="MLP hidden layer widths, comma-separated.")
    channels: str = Field("32,64", description="CNN conv channels per block, comma-separated.")
    dropout: float = Field(0.1, description="Dropout probability in [0, 1).")

    # optimization
    epochs: int = Field(30, description="Maximum number of epochs.")
    batch_size: int = Field(
        64,
        description="Samples per optimizer step (global batch): each of the nproc_per_node*nnodes ranks "
        "takes batch_size/ranks of them, so results do not depend on the number of processes.",
    )
    optimizer: Literal["sgd", "adam", "adamw"] = Field("adamw", description="Optimizer.")
    lr: float = Field(0.003, description="Peak learning rate.")
    momentum: float = Field(0.9, description="SGD momentum.")
    weight_decay: float = Field(0.0001, description="Weight decay (L2 for sgd/adam, decoupled for adamw).")
    scheduler: Literal["none", "step", "cosine", "plateau"] = Field(
        "cosine", description="LR schedule per epoch."
    )
    lr_step_size: int = Field(10, description="step: epochs between LR decays.")
    lr_gamma: float = Field(0.5, description="step/plateau: LR multiplier at each decay.")
    plateau_patience: int = Field(3, description="plateau: epochs without improvement before a decay.")
    loss: Literal["cross_entropy", "focal"] = Field("cross_entropy", description="Training loss.")
    label_smoothing: float = Field(0.0, description="cross_entropy: label smoothing in [0, 1).")
    focal_gamma: float = Field(2.0, description="focal: focusing parameter gamma >= 0.")
    grad_accumulation_steps: int = Field(1, description="Batches accumulated per optimizer step.")
    grad_clip_norm: float | None = Field(
        None, description="Clip the gradient norm to this value; empty: off."
    )
    early_stopping_metric: Literal["val_loss", "val_accuracy", "val_f1_macro"] = Field(
        "val_loss", description="Validation metric that picks the best epoch and drives early stopping."
    )
    patience: int = Field(
        10, description="Stop after this many epochs without improvement; 0: never stop early."
    )
    sanity_check: bool = Field(
        False, description="First overfit one batch and fail fast if the loss stays high."
    )

    # hardware
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto picks cuda when available.")
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto", description="Mixed precision on CUDA: auto = bf16 if supported, else fp16; CPU: off."
    )

    # distributed data parallel: torchrun (torch.distributed.run) starts the processes
    nproc_per_node: int = Field(
        1,
        description="Processes per node; above 1 (or nnodes above 1) the job starts torchrun, one "
        "data-parallel rank per process (gloo on CPU, NCCL on CUDA). 1: the plain single process.",
    )
    nnodes: int = Field(1, description="Nodes taking part; above 1 needs rdzv_endpoint.")
    node_rank: int = Field(0, description="This node's rank among nnodes (0 .. nnodes-1).")
    rdzv_endpoint: str | None = Field(
        None, description="HOST:PORT of the c10d rendezvous, the same on every node; empty: this machine."
    )
    max_restarts: int = Field(
        0,
        description="torchrun restarts of the whole worker group after a rank dies; each restart "
        "continues the same run from its last checkpoint.",
    )

    cpu_threads: int = Field(
        1,
        description="torch CPU threads; 0: torch's default. 1 is fastest on a shared machine, where more "
        "OpenMP threads than free cores spin against each other.",
    )

    # tracking and checkpoints
    log_every_n_steps: int = Field(
        10, description="Log train_loss_step, lr, grad_norm every N optimizer steps."
    )
    checkpoint_every: int = Field(
        5, description="Checkpoint every N epochs (and always at the end); 0: end only."
    )
    resume_from: str | None = Field(None, description="Run id to resume from its last checkpoint (same run).")
    experiment: str | None = Field(
        None, description="Experiment name; default: MLFLOW_EXPERIMENT_NAME or Default."
    )
    run_name: str | None = Field(None, description="Run name.")
    registered_model_name: str | None = Field(None, description="Register the final model under this name.")

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        if value in TORCH_DATASETS or any(
            value.startswith(prefix) and len(value) > len(prefix) for prefix in TABLE_PREFIXES
        ):
            return value
        raise ValueError(
            f"dataset={value!r} is not one of {', '.join(TORCH_DATASETS)}, csv:<path>, parquet:<path>"
        )

    @field_validator("registered_model_name")
    @classmethod
    def _registrable(cls, value: str | None) -> str | None:
        return registrable_model_name(value)

    @field_validator("resume_from")
    @classmethod
    def _run_id(cls, value: str | None) -> str | None:
        # Checked here, not by the server: the id also names a local folder (checkpoint_path).
        if value is not None and not _RUN_ID.match(value):
            raise ValueError(
                f"resume_from={value!r} must be a run id: 32 lowercase hexadecimal characters, "
                "as MLflow shows it"
            )
        return value

    @field_validator("hidden_sizes", "channels")
    @classmethod
    def _sizes(cls, value: str, info) -> str:
        parse_sizes(value, info.field_name)
        return value

    @field_validator("dropout", "label_smoothing")
    @classmethod
    def _unit_interval(cls, value: float, info) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{info.field_name}={value} must be in [0, 1)")
        return value

    @field_validator(
        "epochs",
        "batch_size",
        "grad_accumulation_steps",
        "nproc_per_node",
        "nnodes",
        "log_every_n_steps",
        "lr_step_size",
        "plateau_patience",
    )
    @classmethod
    def _positive_int(cls, value: int, info) -> int:
        if value < 1:
            raise ValueError(f"{info.field_name}={value} must be >= 1")
        return value

    @field_validator("patience", "checkpoint_every", "cpu_threads", "node_rank", "max_restarts")
    @classmethod
    def _non_negative_int(cls, value: int, info) -> int:
        if value < 0:
            raise ValueError(f"{info.field_name}={value} must be >= 0")
        return value

    @field_validator("lr", "lr_gamma")
    @classmethod
    def _positive_float(cls, value: float, info) -> float:
        if value <= 0:
            raise ValueError(f"{info.field_name}={value} must be > 0")
        return value

    @field_validator("momentum", "weight_decay", "focal_gamma")
    @classmethod
    def _non_negative_float(cls, value: float, info) -> float:
        if value < 0:
            raise ValueError(f"{info.field_name}={value} must be >= 0")
        return value

    @field_validator("grad_clip_norm")
    @classmethod
    def _positive_clip(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError(f"grad_clip_norm={value} must be > 0 (or empty for no clipping)")
        return value

    @model_validator(mode="after")
    def _cross_field_rules(self) -> TorchTrainConfig:
        if self.model == "cnn" and self.dataset not in IMAGE_DATASETS:
            raise ValueError(
                f"model=cnn needs image data (dataset={'|'.join(IMAGE_DATASETS)}); dataset={self.dataset!r} "
                "is tabular: use model=mlp"
            )
        if self.dataset.startswith(TABLE_PREFIXES) and not self.target:
            raise ValueError(f"dataset={self.dataset!r} needs target=<label column>")
        if self.impute == "none":
            raise ValueError(
                "impute=none leaves missing numbers, which a network cannot take: use median|most_frequent"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(
                f"val_fraction={self.val_fraction} must be in (0, 1): validation picks the best epoch"
            )
        if self.device == "cpu" and self.amp in ("bf16", "fp16"):
            raise ValueError(f"amp={self.amp} needs device=cuda (or auto on a GPU machine); device=cpu")
        self._check_distributed()
        return self

    def _check_distributed(self) -> None:
        if self.batch_size % self.world_size:
            raise ValueError(
                f"batch_size={self.batch_size} is the global batch, split evenly over the "
                f"nproc_per_node*nnodes={self.nproc_per_node}*{self.nnodes}={self.world_size} ranks: "
                f"it must be a multiple of {self.world_size}"
            )
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError(f"nnodes={self.nnodes} needs rdzv_endpoint=HOST:PORT (the same on every node)")
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank={self.node_rank} must be below nnodes={self.nnodes}")
        if self.rdzv_endpoint is not None and not _HOST_PORT.match(self.rdzv_endpoint):
            raise ValueError(f"rdzv_endpoint={self.rdzv_endpoint!r} must be HOST:PORT, e.g. 10.0.0.1:29400")

    @classmethod
    def conditional_fields(cls) -> tuple[str, ...]:
        return tuple(CONDITIONAL_FIELDS)

    def logged_params(self) -> dict[str, object]:
        params = self.to_params()
        return {
            name: value
            for name, value in params.items()
            if name not in CONDITIONAL_FIELDS
            or params[CONDITIONAL_FIELDS[name][0]] in CONDITIONAL_FIELDS[name][1]
        }

    @property
    def world_size(self) -> int:
        """The number of data-parallel ranks the launch params ask for."""
        return self.nproc_per_node * self.nnodes

    @property
    def launches_torchrun(self) -> bool:
        return self.world_size > 1

    @property
    def hidden_layer_sizes(self) -> tuple[int, ...]:
        return parse_sizes(self.hidden_sizes, "hidden_sizes")

    @property
    def conv_channels(self) -> tuple[int, ...]:
        return parse_sizes(self.channels, "channels")
