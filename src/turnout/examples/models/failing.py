"""A model that raises on every non-empty row, always or once a flag file exists (its
feature store goes down). Empty rows, such as warm-up probes, still get class 0."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import numpy.typing as npt


class Model:
    n_features = 30
    flag = pathlib.Path("/nonexistent")
    always = False

    def load(self, path: str) -> None:
        settings = json.loads((pathlib.Path(path) / "settings.json").read_text())
        self.flag = pathlib.Path(settings["flag"])
        self.always = bool(settings["always"])

    def predict(self, features: npt.ArrayLike) -> npt.NDArray[np.int64]:
        rows = np.asarray(features, dtype=float)
        if rows.any() and (self.always or self.flag.exists()):
            raise RuntimeError("feature store unavailable")
        return np.zeros(len(rows), dtype=np.int64)
