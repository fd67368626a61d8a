"""Infer a version's signature from its model and an optional sample, and check it predicts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from turnout.errors import InvalidArtifact
from turnout.registry import tensors
from turnout.registry.flavors import LoadedModel, ModelFacts, Prediction
from turnout.registry.flavors.base import Features
from turnout.registry.servable import frame
from turnout.registry.signature import (
    Column,
    DType,
    Signature,
    TensorSpec,
    columns_of,
    example_rows,
    to_python,
    unnamed_columns,
)
from turnout.types import JSON, Array


def feature_frame(sample: pd.DataFrame, facts: ModelFacts, target: str | None) -> pd.DataFrame:
    """The columns of `sample` that the model reads, in the model's order."""
    if target is not None and target not in sample.columns:
        raise InvalidArtifact(f"target column {target!r} is not in the training data")
    if facts.feature_names:
        resolved = {name: _sample_column(sample, name) for name in facts.feature_names}
        missing = [name for name, column in resolved.items() if column is None]
        if missing:
            raise InvalidArtifact(f"training data lacks the model's features: {missing[:10]}")
        return sample[[column for column in resolved.values() if column is not None]]
    features = sample.drop(columns=[target]) if target else sample
    if facts.n_features is not None and features.shape[1] != facts.n_features:
        raise InvalidArtifact(
            f"the model reads {facts.n_features} features but the training data has "
            f"{features.shape[1]} columns besides the target; name the target with --target"
        )
    return features


def _sample_column(sample: pd.DataFrame, name: str) -> str | None:
    """The sample column a model feature reads; LightGBM stores "mean radius" as "mean_radius"."""
    if name in sample.columns:
        return name
    matches = [c for c in sample.columns if str(c).replace(" ", "_") == name]
    return str(matches[0]) if len(matches) == 1 else None


def _columns(facts: ModelFacts, sample: pd.DataFrame | None) -> tuple[tuple[Column, ...], bool]:
    if sample is not None:
        named = facts.feature_names is not None or not _generic(sample)
        return columns_of(sample), named
    dtype = facts.input_dtype or DType.FP64
    if facts.feature_names:
        return tuple(Column(n, dtype) for n in facts.feature_names), True
    if facts.n_features:
        return unnamed_columns(facts.n_features, dtype), False
    raise InvalidArtifact(
        "cannot tell what inputs this model takes: register it with --training-data "
        "(a CSV/Parquet sample), or give the model feature_names / n_features"
    )


def _generic(sample: pd.DataFrame) -> bool:
    return all(isinstance(c, int) for c in sample.columns)


def infer_signature(
    model: LoadedModel, facts: ModelFacts, sample: pd.DataFrame | None
) -> Signature:
    """Build the signature and prove the model predicts on example rows."""
    if facts.tensors is not None:
        if sample is not None:
            raise InvalidArtifact(
                "this model takes tensors, not a table: register it without --training-data "
                "(drift statistics are computed for tabular models only)"
            )
        return _tensor_signature(model, facts, facts.tensors)
    columns, named = _columns(facts, sample)
    if sample is not None:
        examples = example_rows(sample)
        allow_missing = facts.handles_missing or bool(sample.isna().to_numpy().any())
    else:
        examples = (tuple(0.0 if c.dtype.numeric else "" for c in columns),)
        allow_missing = facts.handles_missing
    draft = Signature(columns=columns, named=named, example=examples, allow_missing=allow_missing)
    rows = np.array(examples, dtype=np.float64 if draft.numeric else object)
    prediction = _try_predict(model, rows, draft)
    if len(prediction.values) != len(rows):
        raise InvalidArtifact(
            f"the model returned {len(prediction.values)} predictions for {len(rows)} rows"
        )
    classes: tuple[JSON, ...] | None = facts.classes
    if prediction.probabilities is not None and classes is None:
        classes = tuple(range(prediction.probabilities.shape[1]))
    if classes is not None:
        classes = tuple(to_python(c) for c in classes)
    return Signature(
        columns=columns,
        named=named,
        output_dtype=DType.of(np.asarray(prediction.values).dtype),
        classes=classes if prediction.probabilities is not None else None,
        allow_missing=allow_missing,
        example=examples,
    )


def _tensor_signature(
    model: LoadedModel, facts: ModelFacts, specs: tuple[TensorSpec, ...]
) -> Signature:
    """A tensor model's signature, proven on two rows of zeros: its outputs' shape and type
    are what the model returned."""
    _check_specs(specs)
    rows = tensors.example_rows(specs)
    draft = Signature(columns=(), named=False, tensors=specs)
    prediction = _try_predict(model, rows, draft)
    values = np.asarray(prediction.values)
    if values.ndim == 0 or len(values) != len(rows):
        raise InvalidArtifact(
            f"the model returned values of shape {values.shape} for {len(rows)} rows; "
            "the first axis of its output must be the batch axis"
        )
    classes = facts.classes
    if prediction.probabilities is not None and classes is None:
        classes = tuple(range(prediction.probabilities.shape[1]))
    return Signature(
        columns=(),
        named=False,
        output_dtype=DType.of(values.dtype),
        classes=tuple(to_python(c) for c in classes)
        if classes is not None and prediction.probabilities is not None
        else None,
        tensors=specs,
        output_shape=(-1, *values.shape[1:]),
    )


def _check_specs(specs: tuple[TensorSpec, ...]) -> None:
    if not specs:
        raise InvalidArtifact("a tensor model needs at least one input")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise InvalidArtifact(f"two inputs have the same name: {names}")
    for spec in specs:
        if not spec.shape or spec.shape[0] != -1:
            raise InvalidArtifact(
                f"input {spec.name!r}: shape {list(spec.shape)} must start with -1, the batch axis"
            )
        if any(d < 1 for d in spec.item_shape):
            raise InvalidArtifact(
                f"input {spec.name!r}: shape {list(spec.shape)} has a dimension that is not "
                "fixed beyond the batch axis; give every other dimension a size"
            )


def _try_predict(model: LoadedModel, rows: Array, signature: Signature) -> Prediction:
    features: Features
    if signature.tensors:
        features = tensors.features(rows, signature.tensors)
    else:
        features = frame(rows, signature) if signature.named and model.wants_frame else rows
    try:
        return model.predict(features)
    except Exception as exc:  # user models may raise anything
        raise InvalidArtifact(
            f"the model failed to predict on example rows: {type(exc).__name__}: {exc}"
        ) from exc
