"""Compare a window of served inputs with the training profile: PSI and a two-sample test per feature.

- Numeric: PSI over the profile's quantile bins, and a two-sample Kolmogorov-Smirnov test on the two
  empirical CDFs evaluated at the profile's edges (scipy.stats.kstwobign, effective sample size
  n*m/(n+m)). With every distinct training value as an edge (few distinct values) this is the exact KS
  statistic; with quantile edges it can only be smaller, so the test errs on the quiet side.
- Categorical: PSI over the categories (unseen ones pooled), and scipy.stats.chi2_contingency on the
  window's counts against the training counts.

A feature drifts when its test is significant after a Bonferroni correction over the features
(p < alpha / features) AND its PSI is at least `psi_min` (large windows make tiny, harmless shifts
significant), or when its missing rate rose by more than `missing_increase`, or when more than
`out_of_range_max` of its values fall outside the training range, or when it is absent.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# Floor for a bin's share in PSI, so an empty bin does not make it infinite.
PSI_EPSILON = 1e-4
OTHER = "__other__"


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature counts as drifted (see the module docstring); every one can be overridden."""

    alpha: float = 0.05
    psi_min: float = 0.1
    missing_increase: float = 0.1
    out_of_range_max: float = 0.05


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str
    drifted: bool
    psi: float
    test: str
    statistic: float
    p_value: float
    missing_rate: float
    training_missing_rate: float
    out_of_range: float = 0.0
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def psi(expected: Any, actual: Any) -> float:
    """Population stability index of two distributions over the same bins."""
    import numpy as np

    p = np.maximum(np.asarray(expected, dtype=float), PSI_EPSILON)
    q = np.maximum(np.asarray(actual, dtype=float), PSI_EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def numeric_drift(
    name: str, profile: dict[str, Any], values: Any
) -> tuple[float, float, float, float, float]:
    """(psi, ks statistic, p-value, missing rate, out-of-range share) of one numeric feature."""
    import numpy as np
    from scipy import stats

    x = np.asarray(values, dtype=float)
    present = np.sort(x[~np.isnan(x)])
    missing = float(1 - present.size / max(x.size, 1))
    edges = np.asarray(profile["edges"], dtype=float)
    if not present.size or not edges.size:
        return 0.0, 0.0, 1.0, missing, 0.0
    train_cdf = np.asarray(profile["cdf"], dtype=float)
    window_cdf = np.searchsorted(present, edges, side="right") / present.size
    statistic = float(np.max(np.abs(window_cdf - train_cdf)))
    n, m = present.size, profile["count"]
    p_value = float(stats.kstwobign.sf(statistic * math.sqrt(n * m / (n + m))))
    train_bins = np.diff(np.concatenate([[0.0], train_cdf, [1.0]]))
    window_bins = np.diff(np.concatenate([[0.0], window_cdf, [1.0]]))
    outside = float(np.mean((present < profile["min"]) | (present > profile["max"])))
    return psi(train_bins, window_bins), statistic, p_value, missing, outside


def categorical_drift(profile: dict[str, Any], values: Any) -> tuple[float, float, float, float]:
    """(psi, chi-squared statistic, p-value, missing rate) of one categorical feature."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    series = pd.Series(values, dtype="object")
    present = series.dropna().astype(str)
    missing = float(1 - present.size / max(len(series), 1))
    frequencies: dict[str, float] = profile["frequencies"]
    if not present.size or not frequencies:
        return 0.0, 0.0, 1.0, missing
    counts = present.where(present.isin(list(frequencies)), OTHER).value_counts()
    categories = [*frequencies, OTHER]
    window = np.array([counts.get(c, 0) for c in categories], dtype=float)
    train = np.array([frequencies.get(c, 0.0) * profile["count"] for c in categories])
    keep = (window + train) > 0
    table = np.vstack([window[keep], train[keep]])
    if table.shape[1] < 2:
        statistic, p_value = 0.0, 1.0
    else:
        result = stats.chi2_contingency(table, correction=False)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    return psi(train / train.sum(), window / window.sum()), statistic, p_value, missing


def compare_window(
    profile: dict[str, Any], frame: pd.DataFrame, thresholds: DriftThresholds | None = None
) -> list[FeatureDrift]:
    """Every profiled feature compared with `frame`'s column of the same name; drifted features
    first (most significant first), then the rest by name."""
    thresholds = thresholds or DriftThresholds()
    features: dict[str, dict[str, Any]] = profile["features"]
    corrected_alpha = thresholds.alpha / max(len(features), 1)
    results = []
    for name, feature in features.items():
        if name not in frame.columns:
            results.append(
                FeatureDrift(name, feature["kind"], True, math.inf, "absent", math.inf, 0.0, 1.0,
                             feature["missing_rate"], reasons=["absent from the served inputs"])
            )  # fmt: skip
            continue
        outside = 0.0
        if feature["kind"] == "numeric":
            index, statistic, p_value, missing, outside = numeric_drift(name, feature, frame[name])
            test = "ks"
        else:
            index, statistic, p_value, missing = categorical_drift(feature, frame[name])
            test = "chi2"
        reasons = []
        if p_value < corrected_alpha and index >= thresholds.psi_min:
            reasons.append(
                f"{test} p={p_value:.2g} < {corrected_alpha:.2g} and PSI {index:.3f} >= {thresholds.psi_min}"
            )
        if missing - feature["missing_rate"] > thresholds.missing_increase:
            reasons.append(f"missing rate {missing:.1%} vs {feature['missing_rate']:.1%} in training")
        if outside > thresholds.out_of_range_max:
            reasons.append(f"{outside:.1%} of values outside the training range")
        results.append(
            FeatureDrift(name, feature["kind"], bool(reasons), index, test, statistic, p_value, missing,
                         feature["missing_rate"], outside, reasons)
        )  # fmt: skip
    return sorted(results, key=lambda r: (not r.drifted, r.p_value if r.drifted else 0.0, r.feature))
