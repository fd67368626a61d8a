"""The rows a retrain trains on, from the policy's data source, with their fingerprint.

MINIMAL VERSION: a single local CSV or Parquet file. Folders, globs, S3, SQL, the
deployment's logged traffic and reference data come next.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from turnout.errors import BadRequest
from turnout.lifecycle.retrain.policy import DataSource
from turnout.registry.baseline import fingerprint
from turnout.types import JSON


@dataclass(frozen=True)
class TrainingData:
    frame: pd.DataFrame
    """The input columns (the parent's, in its order) and the target column, oldest row
    first (so the newest rows are the tail)."""
    fingerprint: str
    """sha256 of the frame's content (`registry.baseline.fingerprint`)."""
    sources: list[dict[str, JSON]]
    """What was read, e.g. `{"kind": "path", "files": [{"name", "sha256", "rows"}]}`."""

    @property
    def rows(self) -> int:
        return len(self.frame)


def load_training_data(
    source: DataSource, *, columns: list[str], target: str, deployment: str, log_root: Path
) -> TrainingData:
    """Read the source, keep `columns` + `target` (BadRequest naming any that are missing),
    and fingerprint the result."""
    if source.path is None:
        raise BadRequest("only file sources are supported so far")
    path = Path(source.path).expanduser()
    if not path.is_file():
        raise BadRequest(f"training data {source.path} does not exist")
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = [c for c in [*columns, target] if c not in frame.columns]
    if missing:
        raise BadRequest(f"training data {source.path} lacks columns: {', '.join(missing)}")
    frame = frame[[*columns, target]].reset_index(drop=True)
    return TrainingData(frame, fingerprint(frame), [{"kind": "path", "path": str(path)}])
