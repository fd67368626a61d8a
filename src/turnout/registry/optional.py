"""Import an optional flavor library, or say which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from turnout.errors import InvalidArtifact


def optional_import(module: str, flavor: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InvalidArtifact(
            f"the {flavor} flavor needs {module}: pip install 'turnout[{flavor}]'"
        ) from exc
