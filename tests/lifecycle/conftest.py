"""Fixtures shared by the lifecycle tests."""

from tests.fixtures.webhooks import receiver

__all__ = ["receiver"]
