from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.pg import PostgresServer, find_pg_bin


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server shared by the whole test session."""
    if find_pg_bin() is None:
        msg = (
            "PostgreSQL binaries not found (initdb/pg_ctl); install them with "
            "'apt-get install postgresql' (or run 'bash scripts/ensure-system-deps.sh' "
            "as root), or set TURNOUT_PG_BIN to the directory containing them"
        )
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """SQLAlchemy URL of a fresh, empty database for this test."""
    return pg_server.create_database(f"t_{uuid.uuid4().hex}")
