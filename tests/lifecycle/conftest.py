"""Fixtures shared by the lifecycle tests."""

from tests.lifecycle.test_notify import receiver

__all__ = ["receiver"]
