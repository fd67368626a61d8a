"""turnout: production ML model lifecycle management."""

from turnout.aclient import AsyncClient
from turnout.calls import ApiError, InferResult
from turnout.client import Client

__all__ = ["ApiError", "AsyncClient", "Client", "InferResult", "__version__"]
__version__ = "0.1.0"
