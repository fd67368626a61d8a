"""MLflow models that hide a pickle or a loader module from the pickle policy: what MLmodel
says decides what loading executes. Each crafted model carries a canary that must not fire."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.registry import open_registry
from turnout.errors import PolicyRefused
from turnout.registry.flavors.mlflow import MlflowFlavor, runs_own_code, unpickles
from turnout.registry.service import NewVersion, Registry


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[Registry]:
    with open_registry(tmp_path / "registry", allow_pickle=False) as reg:
        yield reg


class MakesCanary:
    """Unpickling this makes a directory: proof that a pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.mkdir, (str(self.path),)


def mlflow_folder(root: Path, flavors: dict[str, Any]) -> Path:
    root.mkdir()
    (root / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors}))
    return root


# -- MLflow: what MLmodel says is what loading executes -------------------------------------


def test_mlflow_pickle_under_another_name_is_refused(strict: Registry, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    folder = mlflow_folder(
        tmp_path / "model",
        {
            "python_function": {"loader_module": "mlflow.sklearn", "model_path": "model.bin"},
            "sklearn": {"pickled_model": "model.bin", "serialization_format": "pickle"},
        },
    )
    (folder / "model.bin").write_bytes(pickle.dumps(MakesCanary(canary)))
    with pytest.raises(PolicyRefused, match="pickle"):
        strict.register(NewVersion(model="m", source=folder, flavor="mlflow"))
    assert not canary.exists()
    assert strict.list_models() == []


def test_mlflow_loader_module_with_code_is_refused(strict: Registry, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    folder = mlflow_folder(
        tmp_path / "model",
        {"python_function": {"loader_module": "evil_loader", "code": "code"}},
    )
    (folder / "code").mkdir()
    (folder / "code" / "evil_loader.py").write_text(
        f"import os\nos.mkdir({str(canary)!r})\n\ndef _load_pyfunc(path):\n    return None\n"
    )
    with pytest.raises(PolicyRefused, match="pickle"):
        strict.register(NewVersion(model="m", source=folder, flavor="mlflow"))
    assert not canary.exists()


@pytest.mark.parametrize(
    ("flavors", "pickled", "code"),
    [
        ({"python_function": {"loader_module": "mlflow.onnx"}, "onnx": {"data": "m.onnx"}}, 0, 0),
        (
            {
                "python_function": {"loader_module": "mlflow.sklearn"},
                "sklearn": {"pickled_model": "model.skops", "serialization_format": "skops"},
            },
            0,
            0,
        ),
        (
            {
                "python_function": {"loader_module": "mlflow.sklearn"},
                "sklearn": {
                    "pickled_model": "model.skops",
                    "serialization_format": "skops",
                    "skops_trusted_types": ["numpy.lib.npyio.DataSource"],
                },
            },
            1,
            0,
        ),
        ({"sklearn": {"pickled_model": "model.pkl", "serialization_format": "cloudpickle"}}, 1, 0),
        ({"python_function": {"loader_module": "mlflow.pyfunc.model", "python_model": "p"}}, 1, 1),
        (
            {
                "python_function": {
                    "loader_module": "mlflow.pyfunc.model",
                    "model_code_path": "m.py",
                }
            },
            0,
            1,
        ),
        ({"python_function": {"loader_module": "mlflow.sklearn", "code": "code"}}, 0, 1),
        ({"python_function": {"loader_module": "mine"}}, 0, 1),
        (
            {
                "python_function": {"loader_module": "mlflow.xgboost"},
                "xgboost": {"model_class": "os.system"},
            },
            0,
            1,
        ),
        ({"lightgbm": {"model_class": "lightgbm.sklearn.LGBMClassifier"}}, 1, 0),
        ({"lightgbm": {"model_class": "lightgbm.basic.Booster"}}, 0, 0),
    ],
)
def test_mlmodel_is_judged_by_what_it_says(
    flavors: dict[str, Any], pickled: int, code: int, tmp_path: Path
) -> None:
    meta = {"flavors": flavors}
    assert unpickles(meta) is bool(pickled)
    assert runs_own_code(meta) is bool(code)
    folder = mlflow_folder(tmp_path / "model", flavors)
    assert MlflowFlavor().uses_pickle(folder) is bool(pickled or code)


def test_unreadable_mlmodel_counts_as_pickle(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: [unclosed")
    assert MlflowFlavor().uses_pickle(folder)
