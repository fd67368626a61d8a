"""A model whose dependency can go down: while the outage flag file exists, every call
hangs for two seconds. Answers are always class 0."""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np
import numpy.typing as npt


class Model:
    outage = pathlib.Path("/nonexistent")

    def load(self, path: str) -> None:
        settings = json.loads((pathlib.Path(path) / "settings.json").read_text())
        self.outage = pathlib.Path(settings["flag"])

    def predict(self, features: npt.ArrayLike) -> npt.NDArray[np.int64]:
        if self.outage.exists():  # a dependency is down: every call hangs
            time.sleep(2.0)
        return np.zeros(len(np.asarray(features)), dtype=np.int64)
