"""Many small, distinct scikit-learn pipelines saved as skops files, each with the answer it
gives to its own probe row, for benchmarks that register thousands of versions.

Each pipeline is StandardScaler + LogisticRegression on FEATURES columns, fitted on its own
random subset of one synthetic data set with its own regularisation, so no two files (and
no two answers) are the same. A folder keeps a manifest, so a second run reuses the files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import orjson
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

FEATURES = 4
ROWS = 2_000
SUBSET = 300
MANIFEST = "manifest.json"
RECIPE = f"v1-{FEATURES}x{ROWS}-{SUBSET}"
"""Changes whenever the way specimens are made changes, so old manifests are not reused."""


@dataclass(frozen=True)
class Specimen:
    """One saved model and what it answers for `row`."""

    path: Path
    row: list[float]
    label: int
    proba: list[float]

    def matches(self, answer: dict[str, object]) -> bool:
        """Whether a native `/predict` answer for `[row]` is this model's answer."""
        predictions = answer.get("predictions")
        probabilities = answer.get("probabilities")
        if predictions != [self.label] or not isinstance(probabilities, list):
            return False
        return bool(np.allclose(probabilities[0], self.proba, rtol=1e-9, atol=1e-12))


def _data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(ROWS, FEATURES)) * rng.uniform(0.5, 20.0, size=FEATURES)
    weights = rng.normal(size=FEATURES) / features.std(axis=0)
    noise = rng.normal(scale=0.5, size=ROWS)
    return features, (features @ weights + noise > 0).astype(np.int64)


def _fit(index: int, features: np.ndarray, target: np.ndarray, seed: int) -> Pipeline:
    rng = np.random.default_rng([seed, index])
    rows = rng.choice(ROWS, size=SUBSET, replace=False)
    c = float(10 ** rng.uniform(-2, 1))
    return make_pipeline(StandardScaler(), LogisticRegression(C=c)).fit(
        features[rows], target[rows]
    )


def _specimen(model: Pipeline, path: Path, features: np.ndarray, index: int) -> Specimen:
    row = features[index % ROWS].tolist()
    proba = model.predict_proba(np.array([row]))[0]
    label = int(model.classes_[proba.argmax()])
    return Specimen(path, row, label, [float(p) for p in proba])


def _load_manifest(folder: Path, count: int, seed: int) -> list[Specimen] | None:
    try:
        manifest = orjson.loads((folder / MANIFEST).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if manifest.get("recipe") != RECIPE or manifest.get("seed") != seed:
        return None
    entries = manifest.get("specimens", [])
    if len(entries) < count:
        return None
    found = [Specimen(**{**e, "path": folder / e["path"]}) for e in entries[:count]]
    return found if all(s.path.is_file() for s in found) else None


def make_fleet(
    folder: Path, count: int, *, seed: int = 0, advance: Callable[[], None] | None = None
) -> list[Specimen]:
    """`count` distinct skops files in `folder` (reused when a manifest already holds them)."""
    folder.mkdir(parents=True, exist_ok=True)
    reused = _load_manifest(folder, count, seed)
    if reused is not None:
        return reused
    features, target = _data(seed)
    specimens = []
    for index in range(count):
        path = folder / f"model-{index:05d}.skops"
        model = _fit(index, features, target, seed)
        sio.dump(model, path)
        specimens.append(_specimen(model, path, features, index))
        if advance is not None:
            advance()
    entries = [{**asdict(s), "path": s.path.name} for s in specimens]
    (folder / MANIFEST).write_bytes(
        orjson.dumps({"recipe": RECIPE, "seed": seed, "specimens": entries})
    )
    return specimens
