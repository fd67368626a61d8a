"""turnout: production ML model lifecycle management."""

from turnout.client import Client

__all__ = ["Client", "__version__"]
__version__ = "0.1.0"
