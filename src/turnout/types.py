"""Small type aliases shared across turnout."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

import numpy.typing as npt

JSON: TypeAlias = Any
"""A value that orjson can encode."""

Array: TypeAlias = npt.NDArray[Any]

Scope: TypeAlias = MutableMapping[str, Any]
"""ASGI connection scope."""
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
