"""Stands in for a model that runs in a runner process: the gateway keeps only its signature."""

from __future__ import annotations

from turnout.errors import ModelUnavailable
from turnout.registry.flavors.base import Features, LoadedModel, Prediction


class RemoteModel(LoadedModel):
    wants_frame = False

    def __init__(self, ref: str) -> None:
        self.ref = ref

    def predict(self, features: Features) -> Prediction:
        raise ModelUnavailable(f"{self.ref} runs in a runner process; call it through the runner")
