"""The tour's model sources load as python-flavor folders and fail the way the tour says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from turnout.examples.context import MODELS
from turnout.examples.models import pipeline
from turnout.registry.flavors.base import LoadedModel
from turnout.registry.flavors.python import PythonFlavor

ROWS = np.ones((3, 30))


def folder(tmp_path: Path, module: str, settings: dict[str, object]) -> LoadedModel:
    target = tmp_path / module
    target.mkdir()
    shutil.copyfile(MODELS / f"{module}.py", target / "model.py")
    (target / "settings.json").write_text(json.dumps(settings))
    return PythonFlavor().load(target)


def test_the_failing_model_raises_once_its_flag_exists(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    model = folder(tmp_path, "failing", {"flag": str(flag), "always": False})
    assert model.predict(ROWS).values.tolist() == [0, 0, 0]
    flag.touch()
    with pytest.raises(RuntimeError, match="feature store unavailable"):
        model.predict(ROWS)
    assert model.predict(np.zeros((2, 30))).values.tolist() == [0, 0]  # empty rows still pass


def test_the_always_failing_model_raises_without_a_flag(tmp_path: Path) -> None:
    model = folder(tmp_path, "failing", {"flag": str(tmp_path / "absent"), "always": True})
    with pytest.raises(RuntimeError, match="feature store unavailable"):
        model.predict(ROWS)


def test_the_flaky_model_answers_zeros_until_its_outage(tmp_path: Path) -> None:
    model = folder(tmp_path, "flaky", {"flag": str(tmp_path / "outage")})
    assert model.predict(pd.DataFrame(ROWS)).values.tolist() == [0, 0, 0]


def test_the_pipeline_fits_on_every_column_but_the_target() -> None:
    features, target = load_breast_cancer(return_X_y=True, as_frame=True)
    data = features.assign(label=target)
    data.attrs["target"] = "label"
    model = pipeline.fit(data, {"C": "1.0"})
    assert model.n_features_in_ == 30
    assert (model.predict(features) == target).mean() > 0.9
