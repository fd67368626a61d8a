"""Training pipelines as users write them (`fit(data, params) -> model`), as source text
that tests write to a `train.py` and register with a version."""

from __future__ import annotations

from pathlib import Path

RECORD_ENV = "RETRAIN_TEST_RECORD"
"""When set, the reference pipeline writes what it received (params, columns, rows) there."""

REFERENCE = """
import json
import os

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def fit(data, params):
    record = os.environ.get("RETRAIN_TEST_RECORD")
    if record:
        with open(record, "w") as out:
            json.dump({"params": params, "columns": list(data.columns), "rows": len(data)}, out)
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=float(params["C"]), max_iter=int(params["max_iter"])),
    )
    return model.fit(data.drop(columns=["target"]), data["target"])
"""

RAISES = """
def fit(data, params):
    raise ValueError("the data looks wrong")
"""

HANGS = """
import time


def fit(data, params):
    print("fitting for ever", flush=True)
    time.sleep(600)
"""

NOT_A_MODEL = """
def fit(data, params):
    return {"weights": [0.1, 0.2]}
"""


def write(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.py"
    path.write_text(source)
    return path
