"""Datasets for both trainers: load (sklearn-bundled or CSV), validate, split, digest.

Every problem a user can fix (a missing file, a missing target column, an unusable column named in
`categorical`/`drop`, a class with a single sample) raises `DataError` here, before any tracking run
exists. Tables may hold strings, booleans and missing values: each column gets a role (columns.py),
unusable ones are dropped with a warning, and the features keep the used columns with one dtype per role.

    dataset = load_dataset("digits")           # or "csv:/path/x.csv" / "parquet:/path/x.parquet", target=...
    dataset.roles.numeric, dataset.roles.categorical  # the column roles (categorical=, drop= override)
    splits = split_dataset(dataset, seed=0, val_fraction=0.15, test_fraction=0.2)
    splits.train.features, splits.train.target, splits.train.digest, splits.train.frame()
    splits.log_to(run)                                 # one MLflow dataset input per non-empty split

Scaling, imputation and encoding are deliberately not done here: they are fitted on the training split
inside each model (preprocessing.py), so serving applies exactly what training applied.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from mlops_platform.columns import ColumnError, ColumnRoles, infer_roles, typed_features
from mlops_platform.errors import UserError

if TYPE_CHECKING:
    from mlops_platform.tracking.interface import Run

Task = Literal["classification", "regression"]
TASKS: tuple[str, ...] = ("classification", "regression")
BUNDLED_DATASETS: tuple[str, ...] = ("digits", "breast_cancer", "wine", "diabetes")
CSV_PREFIX = "csv:"
PARQUET_PREFIX = "parquet:"
TABLE_PREFIXES: tuple[str, ...] = (CSV_PREFIX, PARQUET_PREFIX)
# An integer target with at most this many distinct values is taken as class labels.
MAX_INFERRED_CLASSES = 20
SPLIT_CONTEXTS: tuple[str, ...] = ("train", "validation", "test")


class DataError(UserError):
    """The data cannot be used as asked; the message names the file, column, class or value."""


@dataclass(frozen=True)
class Dataset:
    """A loaded, validated dataset: typed feature columns and one target.

    Attributes:
        name: short name used for runs and MLflow datasets ("digits", or the file's stem).
        source: the spec it was loaded from ("digits", "csv:/data/x.csv").
        features: the used feature columns (`roles.used`), typed by `columns.typed_features`: numeric
            as float64, strings as object, booleans as bool; missing values as NaN.
        target: the label (classification) or value (regression), named `target_name`.
        task: "classification" or "regression".
        class_labels: sorted distinct labels for classification, () for regression.
        image_shape: (height, width) when each row is a flattened grayscale image (digits: (8, 8)).
        roles: what each column is (numeric, categorical, boolean, dropped).
    """

    name: str
    source: str
    features: pd.DataFrame
    target: pd.Series
    task: Task
    class_labels: tuple[Any, ...] = ()
    image_shape: tuple[int, int] | None = None
    roles: ColumnRoles = field(default_factory=ColumnRoles)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(str(column) for column in self.features.columns)

    @property
    def target_name(self) -> str:
        return str(self.target.name)

    @property
    def n_classes(self) -> int:
        return len(self.class_labels)

    @property
    def digest(self) -> str:
        """Content digest of the whole dataset (features, target and column names)."""
        return frame_digest(_joined(self.features, self.target))

    def encode_target(self, target: pd.Series | np.ndarray) -> np.ndarray:
        """Class labels -> indices into `class_labels` (int64), as a torch loss expects."""
        if self.task != "classification":
            raise ValueError("encode_target is for classification datasets")
        index = {label: position for position, label in enumerate(self.class_labels)}
        return np.asarray([index[label] for label in np.asarray(target).tolist()], dtype=np.int64)

    def decode_target(self, indices: np.ndarray) -> np.ndarray:
        """Indices into `class_labels` -> the original labels."""
        return np.asarray(self.class_labels, dtype=object)[np.asarray(indices, dtype=np.int64)]


@dataclass(frozen=True)
class Split:
    """One part of a dataset: `context` is "train", "validation" or "test" (MLflow's dataset context)."""

    context: str
    features: pd.DataFrame
    target: pd.Series

    def __len__(self) -> int:
        return len(self.target)

    @property
    def digest(self) -> str:
        return frame_digest(self.frame())

    def frame(self) -> pd.DataFrame:
        """Features and target in one frame, as `run.log_dataset(frame, targets=target_name)` takes it."""
        return _joined(self.features, self.target)


@dataclass(frozen=True)
class Splits:
    """Deterministic train/validation/test parts of one dataset; validation may be empty."""

    dataset: Dataset
    train: Split
    validation: Split
    test: Split
    seed: int
    val_fraction: float
    test_fraction: float

    def __iter__(self) -> Iterator[Split]:
        return iter((self.train, self.validation, self.test))

    @property
    def digests(self) -> dict[str, str]:
        return {split.context: split.digest for split in self}

    def log_to(self, run: Run) -> None:
        """Log each non-empty split as an MLflow dataset input of `run` (a tracker run)."""
        name, targets = self.dataset.name, self.dataset.target_name
        for split in self:
            if len(split):
                run.log_dataset(split.frame(), name=name, context=split.context, targets=targets)


def frame_digest(frame: pd.DataFrame) -> str:
    """A stable 16-hex-digit digest of a frame's column names, dtypes and values (row order counts)."""
    hasher = hashlib.sha256()
    hasher.update(repr([(str(name), str(dtype)) for name, dtype in frame.dtypes.items()]).encode())
    hasher.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return hasher.hexdigest()[:16]


def _joined(features: pd.DataFrame, target: pd.Series) -> pd.DataFrame:
    return pd.concat([features, target], axis=1)


# --------------------------------------------------------------------------------------------- loading


def load_dataset(
    spec: str,
    target: str | None = None,
    task: str | None = None,
    categorical: tuple[str, ...] = (),
    drop: tuple[str, ...] = (),
) -> Dataset:
    """Load and validate a dataset.

    Args:
        spec: one of `digits`, `breast_cancer`, `wine`, `diabetes`, `csv:<path>` or `parquet:<path>`.
        target: the label column; required for files, and must be "target" (or None) for bundled sets.
        task: "classification", "regression", or None/"auto" to infer it from the target.
        categorical: columns to treat as categorical whatever their type (integer codes).
        drop: columns not to use.

    Raises:
        DataError: unknown dataset, missing file, missing target column, an unknown or unusable column
            in `categorical`/`drop`, no usable column, a class with a single sample, or a target that
            cannot serve the task.
    """
    if spec.startswith(TABLE_PREFIXES):
        name, features, target_series = _load_table(spec, target)
        image_shape = None
    elif spec in _BUNDLED:
        name = spec
        features, target_series, image_shape = _BUNDLED[spec]()
        if target not in (None, "", target_series.name):
            raise DataError(
                f"dataset {spec!r} has the target column {target_series.name!r}; got target={target!r} "
                "(target is for csv:<path> datasets)"
            )
    else:
        raise DataError(
            f"unknown dataset {spec!r}; valid: {', '.join(BUNDLED_DATASETS)}, "
            f"or {CSV_PREFIX}<path> / {PARQUET_PREFIX}<path> with target=<column>"
        )
    resolved_task = _resolve_task(target_series, task)
    if features.shape[1] == 0:
        raise DataError(f"dataset {name!r} has no feature columns besides the target")
    try:
        roles = infer_roles(features, categorical=categorical, drop=drop)
    except ColumnError as error:
        raise DataError(f"dataset {name!r}: {error}") from None
    # One dtype per role: numbers are float64, so model signatures say double and served ints fit too.
    features = typed_features(features, roles)
    if target_series.isna().any():
        raise DataError(
            f"dataset {name!r}: target column {target_series.name!r} has "
            f"{int(target_series.isna().sum())} missing values"
        )
    class_labels: tuple[Any, ...] = ()
    if resolved_task == "classification":
        class_labels = _class_labels(target_series, name)
    else:
        target_series = pd.to_numeric(target_series, errors="raise").astype("float64")
    return Dataset(
        name=name,
        source=spec,
        features=features,
        target=target_series,
        task=resolved_task,
        class_labels=class_labels,
        image_shape=image_shape,
        roles=roles,
    )


def _load_table(spec: str, target: str | None) -> tuple[str, pd.DataFrame, pd.Series]:
    """A CSV or Parquet file -> (name, feature columns, target column)."""
    kind, prefix = ("CSV", CSV_PREFIX) if spec.startswith(CSV_PREFIX) else ("Parquet", PARQUET_PREFIX)
    path_text = spec[len(prefix) :]
    path = Path(path_text).expanduser()
    if not path_text:
        raise DataError(f"dataset {prefix!r} needs a path: {prefix}<path>")
    if not path.is_file():
        raise DataError(f"{kind} file not found: {path}")
    try:
        frame = pd.read_csv(path) if kind == "CSV" else pd.read_parquet(path)
    except (
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        ValueError,
        OSError,
    ) as error:
        raise DataError(f"cannot read {kind} file {path}: {error}") from None
    frame.columns = [str(column) for column in frame.columns]
    columns = list(frame.columns)
    if not target:
        raise DataError(f"{kind} dataset {path.name} needs target=<column>; columns: {', '.join(columns)}")
    if target not in frame.columns:
        raise DataError(f"target column {target!r} not found in {path.name}; columns: {', '.join(columns)}")
    if len(frame) == 0:
        raise DataError(f"{kind} file {path} has no rows")
    return path.stem, frame.drop(columns=[target]), frame[target]


def infer_task(target: pd.Series) -> Task:
    """Classification for string, boolean or categorical targets and for integer targets with few
    distinct values; regression for everything else."""
    dtype = target.dtype
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        return "classification"
    if pd.api.types.is_integer_dtype(dtype) and target.nunique() <= MAX_INFERRED_CLASSES:
        return "classification"
    return "regression"


def _resolve_task(target: pd.Series, task: str | None) -> Task:
    if task in (None, "", "auto"):
        return infer_task(target)
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; valid: auto, {', '.join(TASKS)}")
    if task == "regression" and not pd.api.types.is_numeric_dtype(target.dtype):
        raise DataError(f"task=regression needs a numeric target; column {target.name!r} is {target.dtype}")
    return task  # type: ignore[return-value]


def _class_labels(target: pd.Series, name: str) -> tuple[Any, ...]:
    counts = target.value_counts()
    if len(counts) < 2:
        raise DataError(f"dataset {name!r}: classification needs at least 2 classes in {target.name!r}")
    singles = [label for label, count in counts.items() if count < 2]
    if singles:
        shown = ", ".join(repr(_plain(label)) for label in sorted(singles, key=str))
        raise DataError(
            f"dataset {name!r}: class {shown} of {target.name!r} has a single sample; "
            "a stratified split needs at least 2 per class"
        )
    return tuple(_plain(label) for label in sorted(counts.index, key=_label_sort_key))


def _plain(label: Any) -> Any:
    """numpy scalars -> Python scalars, so labels print and serialize cleanly."""
    return label.item() if isinstance(label, np.generic) else label


def _label_sort_key(label: Any) -> tuple[int, Any]:
    return (0, label) if isinstance(label, int | float | np.number) else (1, str(label))


def _bundled(loader_name: str, image_shape: tuple[int, int] | None = None) -> Callable[[], tuple]:
    def load() -> tuple[pd.DataFrame, pd.Series, tuple[int, int] | None]:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader_name)(as_frame=True)
        features = bunch.data.astype("float64")
        target = bunch.target.rename("target")
        return features, target, image_shape

    return load


_BUNDLED: dict[str, Callable[[], tuple]] = {
    "digits": _bundled("load_digits", image_shape=(8, 8)),
    "breast_cancer": _bundled("load_breast_cancer"),
    "wine": _bundled("load_wine"),
    "diabetes": _bundled("load_diabetes"),
}


# ------------------------------------------------------------------------------------------- splitting


def split_dataset(dataset: Dataset, seed: int, val_fraction: float, test_fraction: float) -> Splits:
    """Deterministic train/validation/test split, stratified for classification.

    The test part is split off first from `test_fraction` and `seed` alone, so runs that differ only in
    `val_fraction` (e.g. the sklearn job, which cross-validates instead) are scored on the same rows.

    Raises:
        DataError: fractions out of range, or too few samples per class for the asked split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction={test_fraction} must be between 0 and 1 (exclusive)")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction} must be in [0, 1)")
    if val_fraction + test_fraction >= 1.0:
        raise DataError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction} leaves no training data "
            "(must be < 1)"
        )
    positions = np.arange(len(dataset.target))
    rest, test = _split_positions(dataset, positions, test_fraction, seed, "test")
    if val_fraction > 0:
        of_rest = val_fraction / (1.0 - test_fraction)
        train, validation = _split_positions(dataset, rest, of_rest, seed, "validation")
    else:
        train, validation = rest, rest[:0]
    return Splits(
        dataset=dataset,
        train=_take(dataset, train, "train"),
        validation=_take(dataset, validation, "validation"),
        test=_take(dataset, test, "test"),
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )


def _split_positions(
    dataset: Dataset, positions: np.ndarray, fraction: float, seed: int, part: str
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    stratify = dataset.target.to_numpy()[positions] if dataset.task == "classification" else None
    n_part = int(np.ceil(fraction * len(positions)))
    if dataset.task == "classification" and n_part < dataset.n_classes:
        raise DataError(
            f"dataset {dataset.name!r}: a {part} part of {n_part} rows cannot hold all {dataset.n_classes} "
            f"classes; raise {part if part == 'test' else 'val'}_fraction or use more data"
        )
    if dataset.task == "classification":
        counts = pd.Series(stratify).value_counts()
        if counts.min() < 2:
            label = _plain(counts.idxmin())
            raise DataError(
                f"dataset {dataset.name!r}: class {label!r} has a single sample left for the {part} split; "
                "lower the other fractions or use more data"
            )
    try:
        kept, taken = train_test_split(positions, test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError as error:
        raise DataError(f"dataset {dataset.name!r}: cannot make the {part} split: {error}") from None
    return np.sort(kept), np.sort(taken)


def _take(dataset: Dataset, positions: np.ndarray, context: str) -> Split:
    return Split(
        context=context,
        features=dataset.features.iloc[positions].reset_index(drop=True),
        target=dataset.target.iloc[positions].reset_index(drop=True),
    )
