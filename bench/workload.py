"""The reference workload: one breast-cancer row per request, in each peer's request format."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline

MAKE_MODEL = Path(__file__).resolve().parent / "make_model.py"
TURNOUT_C = (1.0, 0.5, 2.0)  # three versions of the same model: champion, challenger, shadow


def reference_row() -> tuple[list[str], list[float]]:
    features, _ = breast_cancer()
    return [str(c) for c in features.columns], [float(v) for v in features.iloc[0]]


def oip_body() -> dict[str, object]:
    """Open Inference Protocol v2: one FP64 tensor of shape [1, 30] named input-0."""
    _, row = reference_row()
    return {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": row}]}


def mlflow_body() -> dict[str, object]:
    """mlflow's /invocations has no OIP: the same row as a pandas `split` frame."""
    columns, row = reference_row()
    return {"dataframe_split": {"columns": columns, "data": [row]}}


def turnout_models(folder: Path) -> list[Path]:
    """The DataFrame-fitted reference pipeline, three times (C varies; the cost does not)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        save_joblib(sklearn_pipeline(c=c), folder, name=f"bc-v{i}.joblib")
        for i, c in enumerate(TURNOUT_C, 1)
    ]


def make_in_venv(python: Path, kind: str, out: Path) -> Path:
    """Fit and save the model with the peer's own interpreter and scikit-learn."""
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(python), str(MAKE_MODEL), kind, str(out)], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"fitting the model ({kind}) failed:\n{done.stderr[-1500:]}")
    return out
