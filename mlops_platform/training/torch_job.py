"""The PyTorch training job (MLproject entry point `train_torch`, `mlops train torch`): wires config, data,
model, loop and tracker.

Order of work, so that every mistake a user can make fails before a tracking run exists: resolve the
checkpoint to resume from (if any), load and split the data, check the model fits the data, resolve
the device and precision, build the model, run the optional sanity check. Only then is the run opened,
and everything from there on is logged to it:

- params: the resolved config (and each split as an MLflow dataset input);
- metrics: the loop's step and epoch metrics, then `test_loss`, `test_accuracy`, `test_f1_macro` and
  `best_epoch` (step = the last epoch);
- artifacts: `checkpoints/last.pt`, `plots/learning_curves.png`, `plots/confusion_matrix.png` (test),
  `reports/classification_report.txt` (test), `reports/misclassified_validation.csv` (and
  `plots/misclassified_validation.png` for images), `config.json` (via log_config);
- the model: `ExportedClassifier` (standardization + network + softmax) under the name `model`; see
  mlops_platform/training/models.py for its input/output contract.

Resume (`resume_from=<run_id>`): the checkpoint's config is used (it says how the run was made), the
SAME run is continued, and metric (key, step) pairs the run already holds are not logged again.

Data parallel (`nproc_per_node`/`nnodes` above 1, or started by the user's own torchrun): without
torchrun around it, the job starts torchrun (training/launcher.py) and every rank runs this module
again. Rank 0 owns the run (the MLproject launcher's, a resumed one, or a new one) and sends its id to
the other ranks; they never talk to the tracking server. Rank 0 reads the checkpoint to resume from and
hands it to every rank. After a torchrun restart (`max_restarts`), rank 0 finds the job's run in
`$MLOPS_HOME/torchrun/<rendezvous id>.json` and continues it from its last checkpoint, like a resume.
System metrics are sampled on every node and logged by rank 0 as `system/node_<k>/...` (see
training/node_metrics.py).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlops_platform.columns import COLUMN_ROLES_ARTIFACT
from mlops_platform.config.train_torch import LAUNCH_FIELDS, TorchTrainConfig
from mlops_platform.data import Dataset, Splits, load_dataset, split_dataset
from mlops_platform.errors import UserError
from mlops_platform.evaluation import (
    classification_report_text,
    confusion_matrix_figure,
    learning_curves_figure,
    misclassified_table,
)
from mlops_platform.preprocessing import build_preprocessor
from mlops_platform.settings import mlops_home
from mlops_platform.skew.profile import PROFILE_FILE, model_profile
from mlops_platform.tracking.interface import MetricsSink, Run, Tracker
from mlops_platform.tracking.tags import (
    AMP_TAG,
    DEVICE_TAG,
    RESUMED_FROM_EPOCH_TAG,
    RESUMED_RUN_ID_TAG,
    SANITY_CHECK_LOSS_TAG,
    TORCHRUN_RESTARTS_TAG,
    WORLD_SIZE_TAG,
)
from mlops_platform.training.checkpoint import CheckpointError, load_checkpoint
from mlops_platform.training.device import Precision, configure_cpu_threads, resolve_device, resolve_precision
from mlops_platform.training.distributed import (
    World,
    check_batch_size,
    end_follower_process,
    process_group,
    rank_device,
)
from mlops_platform.training.job_record import remember_run, remembered_run
from mlops_platform.training.models import ExportedClassifier, Standardizer, build_model
from mlops_platform.training.node_metrics import NodeMetrics, node_sampling_interval
from mlops_platform.training.torch_loop import (
    EPOCH_METRICS,
    STEP_METRICS,
    EpochCallback,
    FitResult,
    TensorData,
    Trainer,
    overfit_one_batch,
    seed_everything,
)

logger = logging.getLogger(__name__)

ENTRY_POINT = "train_torch"
CHECKPOINT_ARTIFACT_DIR = "checkpoints"
CHECKPOINT_FILE = "last.pt"
FINAL_METRICS: tuple[str, ...] = ("test_loss", "test_accuracy", "test_f1_macro", "best_epoch")
INPUT_EXAMPLE_ROWS = 5
RESUME_FLUSH_TIMEOUT = 60.0


@dataclass(frozen=True)
class Prepared:
    """Data ready for the loop: network-input tensors, plus what the export and artifacts need.

    `preprocessor` is the ColumnTransformer fitted on the training split (preprocessing.py) for a table
    with categories, booleans or gaps, and None for numeric columns without gaps, which the network's
    own standardization layer (`standardizer`, identity for tables) takes as they are.
    """

    dataset: Dataset
    splits: Splits
    standardizer: Standardizer
    train: TensorData
    validation: TensorData
    test: TensorData
    preprocessor: Any = None


def prepare_data(config: TorchTrainConfig) -> Prepared:
    """Load, split, and fit the input transformation on the training split only.

    Raises:
        DataError: the data module's checks (missing file/column, unusable column, single-sample class).
        UserError: a regression target, or a CNN on data that is not images.
    """
    dataset = load_dataset(
        config.dataset,
        target=config.target,
        categorical=config.categorical_columns,
        drop=config.dropped_columns,
    )
    if dataset.task != "classification":
        raise UserError(
            f"dataset={config.dataset!r} has a regression target ({dataset.target_name}); "
            "the torch trainer does classification"
        )
    if config.model == "cnn" and dataset.image_shape is None:
        raise UserError(f"model=cnn needs image data; dataset={config.dataset!r} is tabular: use model=mlp")
    splits = split_dataset(dataset, config.seed, config.val_fraction, config.test_fraction)
    preprocessor = None
    if dataset.roles.all_numeric_complete:
        standardizer = Standardizer.fit(splits.train.features.to_numpy(np.float32))

        def inputs(frame) -> np.ndarray:
            return frame.to_numpy(np.float32, copy=True)
    else:
        # The same preprocessing the sklearn trainer puts in its pipeline, scaled for the network.
        preprocessor = build_preprocessor(dataset.roles, scale=True, **config.preprocessing_options())
        preprocessor.fit(splits.train.features)
        width = len(preprocessor.get_feature_names_out())
        standardizer = Standardizer(np.zeros(width), np.ones(width))

        def inputs(frame) -> np.ndarray:
            return np.asarray(preprocessor.transform(frame), dtype=np.float32)

    def tensors(split) -> TensorData:
        raw = torch.from_numpy(inputs(split.features))
        with torch.no_grad():
            features = standardizer(raw)
        return TensorData(features, torch.from_numpy(dataset.encode_target(split.target)))

    return Prepared(
        dataset,
        splits,
        standardizer,
        tensors(splits.train),
        tensors(splits.validation),
        tensors(splits.test),
        preprocessor,
    )


def new_model(config: TorchTrainConfig, prepared: Prepared) -> torch.nn.Module:
    return build_model(
        config.model,
        n_features=prepared.train.features.shape[1],
        n_classes=prepared.dataset.n_classes,
        hidden_sizes=config.hidden_layer_sizes,
        channels=config.conv_channels,
        dropout=config.dropout,
        image_shape=prepared.dataset.image_shape,
    )


def checkpoint_path(run_id: str) -> Path:
    """Where a run's checkpoint lives on this machine (also logged to the run)."""
    return mlops_home() / "checkpoints" / run_id / CHECKPOINT_FILE


# ------------------------------------------------------------------------------------------------- job


def run(
    config: TorchTrainConfig, tracker: Tracker | None = None, on_epoch_end: EpochCallback | None = None
) -> str:
    """Train, evaluate and log one model; see the module docstring. Returns the run id; the process of a
    torchrun rank other than 0 ends here instead, once its training is done (`end_follower_process`).

    Args:
        config: the parsed config.
        tracker: a `Tracker` (default: one on the resolved tracking URI) or a `RecordingTracker`; used
            by rank 0 only.
        on_epoch_end: called with (epoch, epoch metrics) after each epoch (see `Trainer`), on rank 0 only.
    """
    world = World.from_env()
    if config.launches_torchrun and world.job_id is None and world.size == 1:
        from mlops_platform.training.launcher import launch

        return launch(config)
    check_batch_size(config.batch_size, world)
    device = rank_device(world, resolve_device(config.device))
    with process_group(world, device):
        attach_run_id, resume_state = world.broadcast_object(
            run_to_continue(config, world) if world.is_main else None
        )
        if resume_state is not None:
            config = config_from_checkpoint(resume_state, config)
            check_batch_size(config.batch_size, world)
        prepared = prepare_data(config)
        precision = resolve_precision(resolve_device(config.device), config.amp)
        configure_cpu_threads(config.cpu_threads)
        seed_everything(config.seed, config.deterministic, precision.device)
        model = new_model(config, prepared)
        if world.rank:  # the same initial weights everywhere, but each rank its own dropout draws
            torch.manual_seed(config.seed + world.rank)
        sanity_loss = (
            overfit_one_batch(model, config, precision, prepared.train) if config.sanity_check else None
        )
        if world.is_main:
            return train_with_tracking(
                config,
                prepared,
                model,
                precision,
                resume_state,
                sanity_loss,
                tracker,
                on_epoch_end,
                world=world,
                attach_run_id=attach_run_id,
            )
        train_as_follower(config, prepared, model, precision, resume_state, world)
    end_follower_process()  # the group is left; see there why a follower's process ends here


def run_to_continue(config: TorchTrainConfig, world: World) -> tuple[str | None, dict[str, Any] | None]:
    """Rank 0: the run to attach to and the checkpoint to continue from, if any.

    `resume_from` names them; after a torchrun restart they are the run this job opened on its first
    attempt and that run's last local checkpoint (none if it died before the first one).
    """
    if config.resume_from:
        return config.resume_from, fetch_checkpoint(config.resume_from)
    if world.restart_count and world.job_id:
        run_id = remembered_run(world.job_id)
        if run_id:
            local = checkpoint_path(run_id)
            return run_id, load_checkpoint(local) if local.is_file() else None
    return None, None


def train_with_tracking(
    config: TorchTrainConfig,
    prepared: Prepared,
    model: torch.nn.Module,
    precision: Precision,
    resume_state: dict[str, Any] | None,
    sanity_loss: float | None,
    tracker: Tracker | None = None,
    on_epoch_end: EpochCallback | None = None,
    world: World | None = None,
    attach_run_id: str | None = None,
) -> str:
    """Open the run (new, the MLproject launcher's, or the resumed one), train, evaluate, log; return the
    run id.

    In a data-parallel job this is rank 0's part: it owns the run and sends its id to the other ranks.
    """
    world = world if world is not None else World()
    attach_run_id = attach_run_id or config.resume_from
    node_interval = 0.0
    if tracker is None:
        from mlops_platform.tracking import Tracker as ServerTracker

        tracker = ServerTracker()
        if world.distributed:
            # Every node samples its own machine (NodeMetrics); the run's sampler would only see node 0.
            node_interval = node_sampling_interval()
            tracker = ServerTracker(system_metrics_interval=0)
    with tracker.run(
        experiment=config.experiment,
        run_name=config.run_name or f"{config.model}-{prepared.dataset.name}",  # as sklearn runs are named
        resume_run_id=attach_run_id,
        entry_point=ENTRY_POINT,
    ) as run:
        if world.job_id:
            remember_run(world.job_id, run.run_id)
        world.broadcast_object(run.run_id)
        if attach_run_id is None:
            run.log_config(config.to_params(), params=config.logged_params())
            run.log_params(prepared.dataset.roles.params())
            run.log_dict(prepared.dataset.roles.to_dict(), COLUMN_ROLES_ARTIFACT)
            prepared.splits.log_to(run)
        tags = {DEVICE_TAG: precision.device, AMP_TAG: precision.amp_name}
        if world.distributed:
            tags.update({WORLD_SIZE_TAG: str(world.size), TORCHRUN_RESTARTS_TAG: str(world.restart_count)})
        if sanity_loss is not None:
            tags[SANITY_CHECK_LOSS_TAG] = f"{sanity_loss:.5f}"
        if resume_state is not None:
            tags[RESUMED_FROM_EPOCH_TAG] = str(resume_state["epoch"])
        if config.resume_from:
            point_launcher_run_at(run)
        run.set_tags(tags)
        sink: MetricsSink = run if attach_run_id is None else SkipLogged(run, logged_steps(run))
        node_metrics = NodeMetrics(world, sink, node_interval)
        trainer = Trainer(
            model,
            config,
            precision,
            sink,
            prepared.dataset.n_classes,
            checkpoint_path=checkpoint_path(run.run_id),
            # Runs on the checkpoint writer's thread: training does not wait on the upload.
            on_checkpoint=lambda written: run.log_artifact(str(written), CHECKPOINT_ARTIFACT_DIR),
            world=world,
            on_epoch_end=node_metrics.chain(on_epoch_end),
        )
        if resume_state is not None:
            trainer.load_state_dict(resume_state)
        with node_metrics:
            result = trainer.fit(prepared.train, prepared.validation)
        test = trainer.evaluate(prepared.test)
        sink.log_metrics(
            {
                "test_loss": test.loss,
                "test_accuracy": test.accuracy,
                "test_f1_macro": test.f1_macro,
                "best_epoch": float(result.best_epoch),
            },
            step=result.epochs_run,
        )
        val_predictions = log_reports(run, trainer, prepared, result, test.predictions)
        profile = skew_profile(prepared, val_predictions)
        log_exported_model(run, result.model, prepared, config, config.registered_model_name, profile)
        return run.run_id


def train_as_follower(
    config: TorchTrainConfig,
    prepared: Prepared,
    model: torch.nn.Module,
    precision: Precision,
    resume_state: dict[str, Any] | None,
    world: World,
) -> None:
    """A rank other than 0: trains its shard in step with the others and logs nothing anywhere; its
    metrics reach rank 0 through the loop's all-reduces, its node's system metrics through NodeMetrics."""
    run_id = world.broadcast_object(None)
    node_metrics = NodeMetrics(world, None, node_sampling_interval())
    trainer = Trainer(
        model,
        config,
        precision,
        DiscardMetrics(),
        prepared.dataset.n_classes,
        world=world,
        on_epoch_end=node_metrics.chain(None),
    )
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
    with node_metrics:
        trainer.fit(prepared.train, prepared.validation)
    logger.info("rank %d: done; the job's run is %s (logged by rank 0)", world.rank, run_id)


class DiscardMetrics:
    """The sink of ranks other than 0: what they compute is already in rank 0's all-reduced metrics."""

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        pass


# -------------------------------------------------------------------------------------------- resume
def point_launcher_run_at(run: Run) -> None:
    """Running the MLproject entry point with `-P resume_from=ID` creates a run of its own before this job
    starts; the training continues in run ID, so the launcher's run says where to look instead of
    standing empty."""
    launcher_run_id = os.environ.get("MLFLOW_RUN_ID")
    if launcher_run_id and launcher_run_id != run.run_id:
        run.tag_run(launcher_run_id, {RESUMED_RUN_ID_TAG: run.run_id})


def fetch_checkpoint(run_id: str) -> dict[str, Any]:
    """The last checkpoint of a run: the local copy when this machine wrote it, else the run's artifact.

    Raises:
        UserError: the run does not exist, has no checkpoint, or its checkpoint is damaged.
    """
    try:
        return _fetch_checkpoint(run_id)
    except CheckpointError as error:
        raise CheckpointError(f"resume_from={run_id!r}: {error}") from None


def _fetch_checkpoint(run_id: str) -> dict[str, Any]:
    local = checkpoint_path(run_id)
    if local.is_file():
        return load_checkpoint(local)
    from mlops_platform.tracking.artifacts import ArtifactUnavailable, download_run_artifact

    artifact = f"{CHECKPOINT_ARTIFACT_DIR}/{CHECKPOINT_FILE}"
    with tempfile.TemporaryDirectory() as folder:
        try:
            downloaded = download_run_artifact(run_id, artifact, folder)
        except ArtifactUnavailable as error:
            raise UserError(
                f"resume_from={run_id!r}: no checkpoint found for this run ({artifact}): {error}"
            ) from None
        return load_checkpoint(downloaded)


def config_from_checkpoint(state: dict[str, Any], given: TorchTrainConfig) -> TorchTrainConfig:
    """The checkpoint's config (how the run was made), with `resume_from` set; differences in the
    given values are reported and ignored, since a resumed run must continue as it started. The launch
    params (processes, nodes, rendezvous, restarts) are the given ones: the global batch does not
    depend on them, so a run may continue at another world size."""
    stored = dict(state["config"])
    launch = {name: getattr(given, name) for name in LAUNCH_FIELDS}  # how to run it now: the given ones
    differing = {
        name: value
        for name, value in given.to_params().items()
        if name not in ("resume_from", *LAUNCH_FIELDS)
        and value != TorchTrainConfig.model_fields[name].default
        and value != stored.get(name)
    }
    if differing:
        logger.warning("resume_from: ignoring %s; the run continues with its checkpoint's config", differing)
    return TorchTrainConfig.parse({**stored, **launch, "resume_from": given.resume_from})


class SkipLogged:
    """A sink that drops (metric, step) pairs the resumed run already holds, so no step is stored twice
    (the killed process may have logged steps past its last checkpoint)."""

    def __init__(self, run: Run, logged: set[tuple[str, int]]) -> None:
        self.run = run
        self.logged = logged

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        fresh = {name: value for name, value in metrics.items() if (name, step) not in self.logged}
        if fresh:
            self.run.log_metrics(fresh, step=step)


def logged_steps(run: Run) -> set[tuple[str, int]]:
    """(metric, step) pairs the run already holds, including records the killed process journaled but
    never delivered: the resumed run continues that journal, so they are delivered first."""
    try:
        # Every key the run holds counts, system/node_<k>/* included (logged per epoch through the sink).
        return run.logged_metric_steps(
            (*STEP_METRICS, *EPOCH_METRICS, *FINAL_METRICS), timeout=RESUME_FLUSH_TIMEOUT
        )
    except TimeoutError:
        raise UserError(
            f"resume_from={run.run_id}: the tracking server did not take the run's pending records "
            f"within {RESUME_FLUSH_TIMEOUT:.0f}s; cannot tell which metric steps it already holds"
        ) from None


# ----------------------------------------------------------------------------------------- artifacts


def log_reports(
    run: Run, trainer: Trainer, prepared: Prepared, result: FitResult, test_predictions
) -> np.ndarray:
    """Learning curves, test confusion matrix and report, misclassified validation samples; returns the
    validation predictions (class labels)."""
    labels = list(prepared.dataset.class_labels)

    def decode(indices: np.ndarray) -> np.ndarray:
        # decode_target gives an object array, which scikit-learn's metrics cannot type: re-infer it.
        return np.asarray(prepared.dataset.decode_target(indices).tolist())

    history = {name: [row[name] for row in result.history] for name in EPOCH_METRICS[:5]}
    run.log_figure(learning_curves_figure(history), "plots/learning_curves.png")
    test_true = decode(prepared.test.targets.numpy())
    test_pred = decode(test_predictions)
    run.log_figure(confusion_matrix_figure(test_true, test_pred, labels), "plots/confusion_matrix.png")
    run.log_text(
        classification_report_text(test_true, test_pred, labels), "reports/classification_report.txt"
    )
    validation = trainer.evaluate(prepared.validation)
    val_true = decode(prepared.validation.targets.numpy())
    val_pred = decode(validation.predictions)
    table = misclassified_table(
        prepared.splits.validation.features, val_true, val_pred, validation.probabilities
    )
    run.log_text(table.to_csv(index=False), "reports/misclassified_validation.csv")
    if prepared.dataset.image_shape is not None and len(table):
        run.log_figure(misclassified_images_figure(table, prepared), "plots/misclassified_validation.png")
    return val_pred


def skew_profile(prepared: Prepared, val_predictions: np.ndarray) -> dict[str, Any]:
    """The training split's profile for `mlops skew` (raw features, as served), with the validation
    predictions; the served output is a probability per class, so it names each column's class."""
    train = prepared.splits.train
    return model_profile(
        train.features,
        prepared.dataset.roles.to_dict(),
        train.target,
        val_predictions,
        output_classes=[str(label) for label in prepared.dataset.class_labels],
    )


def misclassified_images_figure(table, prepared: Prepared, limit: int = 24) -> Any:
    """The misclassified validation images, titled `label -> prediction`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = table.head(limit)
    columns = min(8, len(shown))
    rows = (len(shown) + columns - 1) // columns
    figure = Figure(figsize=(1.4 * columns, 1.6 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    pixels = shown[list(prepared.dataset.feature_names)].to_numpy(np.float32)
    for position, (row, image) in enumerate(zip(shown.itertuples(), pixels, strict=True)):
        axes = figure.add_subplot(rows, columns, position + 1)
        axes.imshow(image.reshape(prepared.dataset.image_shape), cmap="gray_r")
        axes.set_title(f"{row.label} -> {row.prediction}", fontsize=8)
        axes.axis("off")
    return figure


def exported_classifier(model: torch.nn.Module, prepared: Prepared) -> ExportedClassifier:
    """The serving module: training-split standardization + trained network + softmax, on the CPU."""
    return ExportedClassifier(prepared.standardizer, model).cpu().eval()


def network_description(config: TorchTrainConfig, prepared: Prepared) -> dict[str, Any]:
    """What rebuilds the network at load time (`build_model`'s arguments), the input columns and the
    class labels: the logged model's `network.json`."""
    dataset = prepared.dataset
    return {
        "model": config.model,
        "n_features": int(prepared.train.features.shape[1]),
        "n_classes": dataset.n_classes,
        "hidden_sizes": list(config.hidden_layer_sizes),
        "channels": list(config.conv_channels),
        "dropout": config.dropout,
        "image_shape": list(dataset.image_shape) if dataset.image_shape else None,
        "feature_names": list(dataset.feature_names),
        "class_labels": [str(label) for label in dataset.class_labels],
    }


def log_exported_model(
    run: Run,
    model: torch.nn.Module,
    prepared: Prepared,
    config: TorchTrainConfig,
    registered_model_name: str | None,
    profile: dict[str, Any] | None = None,
) -> Any:
    """Log the classifier as our models-from-code pyfunc taking the raw named columns (see
    mlops_platform/torch_pyfunc.py), with a column signature and an input example."""
    from mlops_platform.tracking.torch_model import log_torch_classifier

    return log_torch_classifier(
        run,
        exported_classifier(model, prepared),
        network_description(config, prepared),
        prepared.preprocessor,
        prepared.splits.train.features.head(INPUT_EXAMPLE_ROWS),
        registered_model_name=registered_model_name,
        metadata={"column_roles": prepared.dataset.roles.to_dict()},
        model_files={PROFILE_FILE: profile} if profile is not None else None,
    )
