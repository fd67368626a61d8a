"""Training-data fingerprints and per-feature baseline statistics, kept for drift checks."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from turnout.errors import BadRequest
from turnout.types import JSON

N_BINS = 10
TOP_CATEGORIES = 20
CDF_POINTS = 101
"""Quantiles at 0, 0.01, ..., 1: the empirical CDF that drift tests compare live values to."""


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame, with a clear error for anything else."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt", ".gz"):
            return pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise BadRequest(f"cannot read {path.name}: {exc}") from exc
    raise BadRequest(f"training data must be .csv or .parquet, got {path.name}")


def fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of the table's content (values and column names), independent of file format."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _numeric_stats(values: pd.Series[Any]) -> dict[str, JSON]:
    present = values.dropna().to_numpy(dtype=np.float64)
    stats: dict[str, JSON] = {"kind": "numeric", "count": int(values.size)}
    stats["missing"] = int(values.isna().sum())
    if present.size == 0:
        return stats
    edges = np.unique(np.quantile(present, np.linspace(0, 1, N_BINS + 1)))
    counts, _ = (
        np.histogram(present, bins=edges) if edges.size > 1 else (np.array([present.size]), edges)
    )
    stats.update(
        mean=float(present.mean()),
        std=float(present.std(ddof=1)) if present.size > 1 else 0.0,
        min=float(present.min()),
        max=float(present.max()),
        quantiles={str(q): float(np.quantile(present, q)) for q in (0.01, 0.25, 0.5, 0.75, 0.99)},
        bin_edges=[float(e) for e in edges],
        bin_counts=[int(c) for c in counts],
        cdf=[float(v) for v in np.quantile(present, np.linspace(0, 1, CDF_POINTS))],
    )
    return stats


def _categorical_stats(values: pd.Series[Any]) -> dict[str, JSON]:
    counts = values.astype("string").value_counts(dropna=True)
    top = counts.head(TOP_CATEGORIES)
    return {
        "kind": "categorical",
        "count": int(values.size),
        "missing": int(values.isna().sum()),
        "distinct": int(counts.size),
        "frequencies": {str(k): int(v) for k, v in top.items()},
        "other": int(counts.iloc[TOP_CATEGORIES:].sum()),
    }


def feature_stats(series: pd.Series[Any], *, categorical: bool = False) -> dict[str, JSON]:
    """Numeric or categorical summary of one column; `categorical` forces the latter, for
    values such as integer class labels whose dtype looks numeric."""
    if (
        categorical
        or pd.api.types.is_bool_dtype(series)
        or not pd.api.types.is_numeric_dtype(series)
    ):
        return _categorical_stats(series)
    return _numeric_stats(series)


def baseline(frame: pd.DataFrame, features: list[str], target: str | None) -> dict[str, JSON]:
    """What drift detection later compares live inputs against."""
    summary: dict[str, JSON] = {
        "rows": len(frame),
        "fingerprint": fingerprint(frame),
        "features": {name: feature_stats(frame[name]) for name in features},
    }
    if target is not None:
        summary["target"] = target
        summary["target_stats"] = feature_stats(frame[target])
    return summary
