"""The one clock of the metadata DB: aware UTC timestamps in, aware UTC timestamps out."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything turnout stores is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
