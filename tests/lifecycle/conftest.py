"""Fixtures shared by the lifecycle tests."""

from tests.fixtures.s3 import s3_server
from tests.fixtures.webhooks import receiver

__all__ = ["receiver", "s3_server"]
