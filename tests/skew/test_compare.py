"""The skew statistics on the digits data: power against a 0.5-std shift of one feature, false alarms
on unshifted traffic, categorical features, missing and absent features, 100,000 rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlops_platform.skew import DriftThresholds, build_profile, compare_window


@pytest.fixture(scope="module")
def digits() -> pd.DataFrame:
    from sklearn.datasets import load_digits

    data = load_digits()
    return pd.DataFrame(data.data, columns=[f"pixel_{i}" for i in range(data.data.shape[1])])


def test_profile_is_compact_json(digits: pd.DataFrame):
    profile = build_profile(digits, labels=np.arange(len(digits)) % 10, validation_predictions=[0, 1, 1, 2])
    text = json.dumps(profile)
    assert len(text) < 60_000
    pixel = profile["features"]["pixel_21"]
    assert pixel["kind"] == "numeric" and pixel["edges"] == sorted(set(pixel["edges"]))
    assert pixel["cdf"][-1] == 1.0 and pixel["missing_rate"] == 0.0
    assert set(profile["label"]["frequencies"]) == {str(i) for i in range(10)}
    assert profile["validation_predictions"]["frequencies"] == {"0": 0.25, "1": 0.5, "2": 0.25}


@pytest.fixture(scope="module")
def trained_profile() -> dict:
    """The profile the sklearn trainer stores with a real digits model (its training split only)."""
    from mlops_platform.config.train_sklearn import TrainSklearnConfig
    from mlops_platform.tracking import RecordingTracker
    from mlops_platform.training import sklearn_job

    tracker = RecordingTracker()
    config = TrainSklearnConfig.parse({"dataset": "digits", "model": "knn", "cv_folds": 2, "baseline": False})
    sklearn_job.run(config, tracker=tracker)
    [model] = tracker.last_run.models
    return model.files["skew_profile.json"]


def test_half_std_shift_of_one_feature_is_flagged_and_unshifted_traffic_is_not(
    digits: pd.DataFrame, trained_profile: dict
):
    """Served windows of 1,000 rows drawn from the digits data, against the trained model's profile."""
    profile = trained_profile
    digits = digits.set_axis(list(profile["features"]), axis=1)  # the trainer's names: pixel_<row>_<col>
    assert profile["rows"] < len(digits)  # the training split, not the whole data set
    feature = "pixel_2_5"
    shift = 0.5 * digits[feature].std()
    rng = np.random.default_rng(0)
    flagged_shifted = flagged_clean = wrong_feature = 0
    for _ in range(100):
        window = digits.sample(1000, replace=True, random_state=rng.integers(2**31)).reset_index(drop=True)
        clean = compare_window(profile, window)
        flagged_clean += any(r.drifted for r in clean)
        window[feature] = window[feature] + shift
        shifted = compare_window(profile, window)
        drifted = [r.feature for r in shifted if r.drifted]
        flagged_shifted += feature in drifted
        wrong_feature += bool(set(drifted) - {feature})
        assert shifted[0].feature == feature or feature not in drifted  # drifted features come first
    assert flagged_shifted >= 95, flagged_shifted
    assert flagged_clean <= 5, flagged_clean
    assert wrong_feature <= 5, wrong_feature


def test_categorical_missing_absent_and_out_of_range():
    rng = np.random.default_rng(1)
    train = pd.DataFrame(
        {
            "color": rng.choice(["red", "green", "blue"], 3000, p=[0.5, 0.3, 0.2]),
            "size": rng.normal(0, 1, 3000),
            "age": rng.normal(40, 5, 3000),
        }
    )
    profile = build_profile(train)
    assert profile["features"]["color"]["kind"] == "categorical"
    same = pd.DataFrame(
        {
            "color": rng.choice(["red", "green", "blue"], 2000, p=[0.5, 0.3, 0.2]),
            "size": rng.normal(0, 1, 2000),
            "age": rng.normal(40, 5, 2000),
        }
    )
    assert not any(r.drifted for r in compare_window(profile, same))

    served = pd.DataFrame(
        {
            "color": rng.choice(["red", "green", "purple"], 2000, p=[0.2, 0.3, 0.5]),
            "size": np.where(rng.random(2000) < 0.3, np.nan, rng.normal(0, 1, 2000)),
        }
    )
    served.loc[:200, "size"] = 50.0  # far outside what training saw
    results = {r.feature: r for r in compare_window(profile, served)}
    assert results["color"].drifted and results["color"].test == "chi2" and results["color"].psi > 0.5
    assert results["size"].drifted and results["size"].missing_rate > 0.2
    assert any("outside the training range" in reason for reason in results["size"].reasons)
    assert results["age"].drifted and results["age"].test == "absent"
    relaxed = compare_window(profile, served, DriftThresholds(missing_increase=1.0, out_of_range_max=1.0))
    assert not any("missing" in reason for r in relaxed for reason in r.reasons)


def test_a_hundred_thousand_rows(digits: pd.DataFrame):
    profile = build_profile(digits)
    served = digits.sample(100_000, replace=True, random_state=0).reset_index(drop=True)
    results = compare_window(profile, served)
    assert len(results) == 64 and not any(r.drifted for r in results)
