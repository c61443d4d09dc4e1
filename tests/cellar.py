"""A real-world-shaped table built from a bundled sklearn dataset: the wine cellar.

Wine's 13 measurements, plus what every team's CSV has: a string category with gaps (`region`), a
boolean (`organic`), missing numbers (`alcohol`, `magnesium`), an id column no model should use
(`bottle_id`) and string labels (`cultivar`). mlops_platform/datasets/wine_cellar.csv is this table,
shipped with the package (tests/test_data.py checks they agree).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TARGET = "cultivar"
CULTIVARS = ("barolo", "grignolino", "barbera")
REGIONS = ("piemonte", "langhe", "monferrato", "roero")


def wine_cellar(seed: int = 0) -> pd.DataFrame:
    from sklearn.datasets import load_wine

    rng = np.random.default_rng(seed)
    bunch = load_wine(as_frame=True)
    frame = bunch.data.rename(columns={"od280/od315_of_diluted_wines": "od280_od315"}).copy()
    n = len(frame)
    for column, share in (("alcohol", 0.1), ("magnesium", 0.15)):
        frame.loc[rng.random(n) < share, column] = np.nan
    # Region follows the cultivar most of the time, so it carries signal a model can use.
    region = np.where(rng.random(n) < 0.7, bunch.target.to_numpy(), rng.integers(0, len(REGIONS), n))
    frame["region"] = pd.Series(np.asarray(REGIONS, dtype=object)[region], dtype=object)
    frame.loc[rng.random(n) < 0.1, "region"] = None
    frame["organic"] = frame["proline"].to_numpy() > frame["proline"].median()
    frame.insert(0, "bottle_id", [f"B{position:05d}" for position in rng.permutation(n)])
    frame[TARGET] = np.asarray(CULTIVARS, dtype=object)[bunch.target.to_numpy()]
    return frame
