"""The shared data module: loading, validation errors, deterministic stratified splits, digests."""

from __future__ import annotations

from pathlib import Path

import cellar
import numpy as np
import pandas as pd
import pytest

from mlops_platform.data import (
    BUNDLED_DATASETS,
    DataError,
    frame_digest,
    infer_task,
    load_dataset,
    split_dataset,
)
from mlops_platform.errors import UserError


@pytest.mark.parametrize(
    ("spec", "task", "n_classes", "image_shape"),
    [
        ("digits", "classification", 10, (8, 8)),
        ("breast_cancer", "classification", 2, None),
        ("wine", "classification", 3, None),
        ("diabetes", "regression", 0, None),
    ],
)
def test_bundled_datasets_load_with_their_task(spec, task, n_classes, image_shape):
    dataset = load_dataset(spec)
    assert dataset.name == spec
    assert dataset.task == task
    assert dataset.n_classes == n_classes
    assert dataset.image_shape == image_shape
    assert dataset.target_name == "target"
    assert len(dataset.feature_names) == dataset.features.shape[1] > 0
    assert all(pd.api.types.is_float_dtype(dtype) for dtype in dataset.features.dtypes)


def test_digits_image_shape_matches_feature_count():
    dataset = load_dataset("digits")
    assert np.prod(dataset.image_shape) == len(dataset.feature_names) == 64


def test_split_is_stratified_deterministic_and_disjoint():
    dataset = load_dataset("wine")
    splits = split_dataset(dataset, seed=3, val_fraction=0.2, test_fraction=0.25)
    again = split_dataset(dataset, seed=3, val_fraction=0.2, test_fraction=0.25)
    assert splits.digests == again.digests
    assert len(splits.train) + len(splits.validation) + len(splits.test) == len(dataset.target)
    assert len(splits.test) == int(np.ceil(0.25 * len(dataset.target)))
    overall = dataset.target.value_counts(normalize=True)
    for split in splits:
        assert set(split.target) == set(dataset.class_labels)
        share = split.target.value_counts(normalize=True)
        assert (share - overall).abs().max() < 0.08, split.context
    # Disjoint: no row appears in two splits.
    keys = [set(map(tuple, split.features.to_numpy().round(6).tolist())) for split in splits]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])


def test_other_seed_gives_other_split():
    dataset = load_dataset("breast_cancer")
    first = split_dataset(dataset, seed=0, val_fraction=0.1, test_fraction=0.2)
    second = split_dataset(dataset, seed=1, val_fraction=0.1, test_fraction=0.2)
    assert first.test.digest != second.test.digest


def test_test_split_does_not_depend_on_val_fraction():
    dataset = load_dataset("digits")
    with_val = split_dataset(dataset, seed=0, val_fraction=0.15, test_fraction=0.2)
    without_val = split_dataset(dataset, seed=0, val_fraction=0.0, test_fraction=0.2)
    assert with_val.test.digest == without_val.test.digest
    assert len(without_val.validation) == 0
    assert len(without_val.train) == len(with_val.train) + len(with_val.validation)


def test_split_frame_holds_features_and_target_for_log_dataset():
    dataset = load_dataset("diabetes")
    splits = split_dataset(dataset, seed=0, val_fraction=0.1, test_fraction=0.2)
    frame = splits.train.frame()
    assert list(frame.columns) == [*dataset.feature_names, "target"]
    assert len(frame) == len(splits.train)
    assert splits.train.digest == frame_digest(frame)


def test_log_to_logs_each_nonempty_split():
    calls = []

    class Run:
        def log_dataset(self, frame, name, context, targets):
            calls.append((name, context, targets, len(frame)))

    splits = split_dataset(load_dataset("wine"), seed=0, val_fraction=0.0, test_fraction=0.2)
    splits.log_to(Run())
    assert [call[:3] for call in calls] == [("wine", "train", "target"), ("wine", "test", "target")]
    assert [call[3] for call in calls] == [len(splits.train), len(splits.test)]


def test_digest_changes_with_content():
    frame = pd.DataFrame({"a": [1.0, 2.0], "target": [0, 1]})
    changed = frame.assign(a=[1.0, 2.5])
    assert frame_digest(frame) == frame_digest(frame.copy())
    assert frame_digest(frame) != frame_digest(changed)
    assert frame_digest(frame) != frame_digest(frame.rename(columns={"a": "b"}))


def _csv(tmp_path: Path, frame: pd.DataFrame, name: str = "data.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return f"csv:{path}"


def test_csv_with_string_labels(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"x1": rng.normal(size=40), "x2": rng.integers(0, 5, 40), "label": ["cat", "dog"] * 20}
    )
    dataset = load_dataset(_csv(tmp_path, frame, "pets.csv"), target="label")
    assert dataset.name == "pets"
    assert dataset.task == "classification"
    assert dataset.class_labels == ("cat", "dog")
    assert dataset.feature_names == ("x1", "x2")
    np.testing.assert_array_equal(dataset.encode_target(["dog", "cat"]), [1, 0])
    assert list(dataset.decode_target(np.array([1, 0]))) == ["dog", "cat"]


def test_csv_task_inference_and_override(tmp_path):
    frame = pd.DataFrame({"x": np.arange(60, dtype=float), "y": np.arange(60) % 3})
    spec = _csv(tmp_path, frame)
    assert load_dataset(spec, target="y").task == "classification"
    regression = load_dataset(spec, target="y", task="regression")
    assert regression.task == "regression"
    assert regression.class_labels == ()
    assert regression.target.dtype == np.float64


@pytest.mark.parametrize(
    ("values", "task"),
    [
        ([0, 1, 2, 1], "classification"),
        (["a", "b", "a", "b"], "classification"),
        ([True, False, True, False], "classification"),
        ([0.5, 1.2, 3.3, 4.0], "regression"),
        (list(range(100)), "regression"),
    ],
)
def test_infer_task(values, task):
    assert infer_task(pd.Series(values)) == task


def test_unknown_dataset_lists_valid_ones():
    with pytest.raises(DataError) as error:
        load_dataset("mnistt")
    assert isinstance(error.value, UserError)
    assert "'mnistt'" in str(error.value)
    for name in BUNDLED_DATASETS:
        assert name in str(error.value)


def test_missing_csv_file(tmp_path):
    with pytest.raises(DataError, match="not found") as error:
        load_dataset(f"csv:{tmp_path / 'nope.csv'}", target="y")
    assert "nope.csv" in str(error.value)


def test_csv_needs_target_and_lists_columns(tmp_path):
    spec = _csv(tmp_path, pd.DataFrame({"a": [1, 2], "b": [3, 4]}))
    with pytest.raises(DataError, match="needs target=<column>; columns: a, b"):
        load_dataset(spec)


def test_missing_target_column_is_named_with_available_columns(tmp_path):
    spec = _csv(tmp_path, pd.DataFrame({"a": [1, 2], "b": [3, 4]}))
    with pytest.raises(DataError, match=r"target column 'label' not found.*columns: a, b"):
        load_dataset(spec, target="label")


def test_string_boolean_and_missing_features_get_roles_and_typed_columns(tmp_path):
    frame = pd.DataFrame(
        {
            "a": [1.0, None, 2.0, 3.0, 4.0, 5.0],
            "color": ["r", "g", None, "r", "g", "b"],
            "flag": [True, False] * 3,
            "y": [0, 1] * 3,
        }
    )
    dataset = load_dataset(_csv(tmp_path, frame), target="y")
    assert dataset.roles.numeric == ("a",) and dataset.roles.categorical == ("color",)
    assert dataset.roles.boolean == ("flag",) and set(dataset.roles.with_missing) == {"a", "color"}
    assert dataset.features.dtypes.astype(str).to_dict() == {
        "a": "float64",
        "color": "object",
        "flag": "bool",
    }


def test_unknown_column_in_categorical_or_drop_is_named(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]})
    with pytest.raises(DataError, match="drop=nope: no such column; columns: a"):
        load_dataset(_csv(tmp_path, frame), target="y", drop=("nope",))


def test_parquet_tables_load_like_csv(tmp_path):
    frame = cellar.wine_cellar()
    frame.to_parquet(tmp_path / "cellar.parquet")
    from_parquet = load_dataset(f"parquet:{tmp_path / 'cellar.parquet'}", target=cellar.TARGET)
    from_csv = load_dataset(_csv(tmp_path, frame, "cellar.csv"), target=cellar.TARGET)
    assert from_parquet.roles == from_csv.roles
    assert from_parquet.name == "cellar" and from_parquet.class_labels == tuple(sorted(cellar.CULTIVARS))
    pd.testing.assert_frame_equal(from_parquet.features, from_csv.features)


def test_the_shipped_csv_is_the_wine_cellar_table(tmp_path):
    import mlops_platform

    shipped = Path(mlops_platform.__file__).parent / "datasets" / "wine_cellar.csv"
    dataset = load_dataset(f"csv:{shipped}", target=cellar.TARGET)
    built = load_dataset(_csv(tmp_path, cellar.wine_cellar(), "wine_cellar.csv"), target=cellar.TARGET)
    assert dataset.digest == built.digest
    assert set(dataset.roles.dropped) == {"bottle_id"}


def test_class_with_single_sample_is_named(tmp_path):
    frame = pd.DataFrame({"a": np.arange(7.0), "y": ["a", "a", "a", "b", "b", "b", "lonely"]})
    with pytest.raises(DataError, match=r"class 'lonely'.*single sample"):
        load_dataset(_csv(tmp_path, frame), target="y")


def test_bundled_dataset_rejects_other_target():
    with pytest.raises(DataError, match="target='label'"):
        load_dataset("digits", target="label")


def test_regression_task_needs_numeric_target(tmp_path):
    spec = _csv(tmp_path, pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "y": list("abab")}))
    with pytest.raises(DataError, match="task=regression needs a numeric target"):
        load_dataset(spec, target="y", task="regression")


@pytest.mark.parametrize(
    ("val_fraction", "test_fraction", "message"),
    [
        (0.1, 0.0, "test_fraction=0.0"),
        (-0.1, 0.2, "val_fraction=-0.1"),
        (0.5, 0.5, "leaves no training data"),
    ],
)
def test_bad_fractions(val_fraction, test_fraction, message):
    with pytest.raises(DataError, match=message):
        split_dataset(load_dataset("wine"), seed=0, val_fraction=val_fraction, test_fraction=test_fraction)


def test_too_small_test_split_for_all_classes():
    with pytest.raises(DataError, match="cannot hold all 10 classes"):
        split_dataset(load_dataset("digits"), seed=0, val_fraction=0.0, test_fraction=0.002)
