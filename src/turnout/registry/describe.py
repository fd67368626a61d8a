"""What registration learns by running a new version's code: its signature, that it
predicts on example rows, its prediction baseline, and how much memory it takes loaded.

This is the only part of registration that runs model code. The server has it done in a
fresh runner process (`turnout.host`), which holds no database credentials or tokens; a
model that exits, hangs or raises there cannot touch the server.
"""

from __future__ import annotations

import gc
import logging
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from turnout.errors import PolicyRefused
from turnout.registry.baseline import baseline, feature_stats, read_table
from turnout.registry.flavors import LoadedModel, get_flavor
from turnout.registry.inference import feature_frame, infer_signature
from turnout.registry.servable import frame
from turnout.registry.signature import Signature
from turnout.types import JSON

log = logging.getLogger("turnout.registry")

PREDICTION_SAMPLE_ROWS = 10_000
"""Training rows the new model predicts on to record its prediction baseline."""


@dataclass(frozen=True, kw_only=True)
class Inspection:
    """What to look at: a model's files (as uploaded) and its optional training sample."""

    flavor: str
    source: Path
    training_data: Path | None = None
    target: str | None = None
    allow_pickle: bool = True

    def to_dict(self) -> dict[str, JSON]:
        return {
            "flavor": self.flavor,
            "source": str(self.source),
            "training_data": str(self.training_data) if self.training_data else None,
            "target": self.target,
            "allow_pickle": self.allow_pickle,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Inspection:
        training = data.get("training_data")
        return cls(
            flavor=str(data["flavor"]),
            source=Path(data["source"]),
            training_data=Path(training) if training else None,
            target=data.get("target"),
            allow_pickle=bool(data.get("allow_pickle", True)),
        )


@dataclass(frozen=True, kw_only=True)
class Description:
    signature: dict[str, JSON]
    training: dict[str, JSON] | None
    """Baseline statistics of the training sample (and of the model's predictions on it)."""
    memory_bytes: int | None
    """Resident memory the loaded model added to its process; None when not measurable."""

    def to_dict(self) -> dict[str, JSON]:
        return {
            "signature": self.signature,
            "training": self.training,
            "memory_bytes": self.memory_bytes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Description:
        memory = data.get("memory_bytes")
        return cls(
            signature=dict(data["signature"]),
            training=data.get("training"),
            memory_bytes=int(memory) if memory is not None else None,
        )


class Inspector(Protocol):
    """Runs `describe` somewhere: here (trusted setups, jobs) or in a runner process."""

    def describe(self, inspection: Inspection) -> Description: ...


class LocalInspector:
    """Runs the model's code in this process (trusted setups and jobs: one load, and no
    memory budget to plan, so no second load to measure it)."""

    def describe(self, inspection: Inspection) -> Description:
        return describe(inspection, warm=True)


def describe(inspection: Inspection, *, warm: bool = False) -> Description:
    """Load the model, infer its signature, prove it predicts, summarise its training data.

    `warm`: this process has loaded a model of the flavor before, so its libraries are in
    memory already and one load measures the model alone.
    """
    flavor = get_flavor(inspection.flavor)
    if not inspection.allow_pickle and flavor.uses_pickle(inspection.source):
        raise PolicyRefused(
            f"{inspection.source.name} is pickle-based and this server refuses pickle "
            "artifacts (TURNOUT_ALLOW_PICKLE=false); use skops, ONNX or a native format"
        )
    if not warm:
        # Measured on a second load: the first one also paid for the libraries it imported,
        # which runners share and which a model does not bring with it.
        model = flavor.load(inspection.source)
        del model
        gc.collect()
    before = resident_bytes()
    model = flavor.load(inspection.source)
    after = resident_bytes()
    memory = max(after - before, 0) if before is not None and after is not None else None
    facts = model.facts()
    sample = features = None
    if inspection.training_data is not None:
        sample = read_table(inspection.training_data)
        features = feature_frame(sample, facts, inspection.target)
    signature = infer_signature(model, facts, features)
    training: dict[str, JSON] | None = None
    if sample is not None and features is not None:
        training = baseline(sample, list(features.columns), inspection.target)
        classifier = facts.classes is not None or signature.classes is not None
        outputs = prediction_stats(model, signature, features, classifier=classifier)
        if outputs is not None:
            training["prediction_stats"] = outputs
    return Description(
        signature=signature.to_dict(),
        training=training,
        memory_bytes=memory,
    )


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux); None where it cannot be read."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except OSError:
        return None


def prediction_stats(
    model: LoadedModel, signature: Signature, features: pd.DataFrame, *, classifier: bool
) -> dict[str, JSON] | None:
    """Statistics of the model's own predictions on (a seeded sample of) its training rows,
    the baseline for prediction drift; None when the model cannot predict on them.

    Class labels are summarised as categories even when they are integers.
    """
    if len(features) > PREDICTION_SAMPLE_ROWS:
        features = features.sample(n=PREDICTION_SAMPLE_ROWS, random_state=0)
    try:
        if signature.numeric:
            rows = features.to_numpy(dtype=np.float64)
        else:
            rows = features.astype(object).where(pd.notna(features), None).to_numpy()
        inputs = frame(rows, signature) if signature.named and model.wants_frame else rows
        values = np.asarray(model.predict(inputs).values)
    except Exception as exc:  # user models may raise anything
        log.warning("no prediction baseline: the model failed on its training rows: %s", exc)
        return None
    if values.ndim != 1 or len(values) != len(features):
        log.warning("no prediction baseline: predictions of shape %s", values.shape)
        return None
    return feature_stats(pd.Series(values), categorical=classifier)
