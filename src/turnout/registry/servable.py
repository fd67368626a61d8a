"""A version in memory with its signature: what the gateway calls to predict."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from turnout.registry import tensors
from turnout.registry.flavors import LoadedModel, Prediction
from turnout.registry.signature import Signature
from turnout.store.records import VersionRecord
from turnout.types import Array


@dataclass(frozen=True, slots=True)
class Servable:
    record: VersionRecord
    signature: Signature
    model: LoadedModel

    @property
    def version(self) -> int:
        return self.record.version

    def predict(self, rows: Array) -> Prediction:
        """Predict on a 2-D array whose columns follow the signature's order (for a tensor
        model: its inputs packed side by side, see `tensors`)."""
        if self.signature.tensors:
            return self.model.predict(tensors.features(rows, self.signature.tensors))
        if self.signature.named and self.model.wants_frame:
            return self.model.predict(frame(rows, self.signature))
        return self.model.predict(rows)

    def warm(self) -> None:
        """A few predictions on the signature's example rows, so the first live request
        finds caches and lazy initialisation done; raises whatever the model raises."""
        examples = self.signature.example
        if self.signature.tensors:
            rows = tensors.example_rows(self.signature.tensors)
        elif examples:
            rows = np.array(examples, dtype=np.float64 if self.signature.numeric else object)
        else:
            return
        for _ in range(3):
            prediction = self.predict(rows)
            if len(prediction.values) != len(rows):
                raise ValueError(
                    f"returned {len(prediction.values)} predictions for {len(rows)} example rows"
                )


def frame(rows: Array, signature: Signature) -> pd.DataFrame:
    data = pd.DataFrame(rows, columns=list(signature.names))
    if rows.dtype == object and signature.numeric:
        data = data.astype("float64")
    elif rows.dtype == object:
        for column in signature.columns:
            if column.dtype.numeric:
                data[column.name] = pd.to_numeric(data[column.name])
    return data
