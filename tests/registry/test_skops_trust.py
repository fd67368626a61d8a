"""skops files rebuild only scikit-learn estimators and the NumPy/SciPy array types they
hold: a file carrying an object with side effects (a canary folder that must survive) is
refused, real models still register."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from numpy.lib._datasource import DataSource
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.preprocessing import StandardScaler

from tests.fixtures.models import breast_cancer, sklearn_pipeline
from tests.fixtures.registry import open_registry
from turnout.errors import PolicyRefused
from turnout.registry.service import NewVersion


def test_skops_file_carrying_datasource_is_refused(tmp_path: Path) -> None:
    """NumPy's DataSource deletes its folder when collected: a skops file that may rebuild it
    deletes any folder it names, at every load."""
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_text("still here")
    scaler = StandardScaler().fit(np.random.default_rng(0).random((10, 3)))
    source = DataSource(destpath=str(tmp_path / "elsewhere"))
    vars(source).update(_destpath=str(canary), _istmpdest=True)  # what the crafted file says
    scaler.cache_ = source
    path = tmp_path / "model.skops"
    sio.dump(scaler, path)
    vars(source)["_istmpdest"] = False
    del scaler, source
    with open_registry(tmp_path / "registry") as registry:
        with pytest.raises(PolicyRefused, match="DataSource"):
            registry.register(NewVersion(model="m", source=path, flavor="sklearn"))
        assert registry.list_models() == []
    gc.collect()
    assert (canary / "keep").read_text() == "still here"


@pytest.mark.parametrize(
    "make",
    [
        lambda: sklearn_pipeline(),
        lambda: RandomForestClassifier(n_estimators=5, random_state=0),
        lambda: HistGradientBoostingClassifier(max_iter=5),
    ],
    ids=["scaler+logistic", "random-forest", "hist-gradient-boosting"],
)
def test_real_skops_models_still_register(make: Any, tmp_path: Path) -> None:
    features, target = breast_cancer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = make().fit(features, target)
    path = tmp_path / "model.skops"
    sio.dump(model, path)
    with open_registry(tmp_path / "registry", allow_pickle=False) as registry:
        record = registry.register(NewVersion(model="m", source=path, flavor="sklearn"))
        values = registry.load(record).predict(features.to_numpy()).values
    np.testing.assert_array_equal(values, model.predict(features))
