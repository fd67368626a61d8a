from __future__ import annotations

import pytest
import sqlalchemy as sa


@pytest.mark.postgres
def test_pg_fixture_roundtrip(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1

        with engine.begin() as conn:
            conn.execute(sa.text("create table items (id serial primary key, name text not null)"))
            conn.execute(
                sa.text("insert into items (name) values (:a), (:b)"),
                {"a": "alpha", "b": "beta"},
            )

        with engine.connect() as conn:
            rows = conn.execute(sa.text("select id, name from items order by id")).all()
        assert [tuple(r) for r in rows] == [(1, "alpha"), (2, "beta")]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_pg_url_is_fresh_database(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                sa.text(
                    "select count(*) from information_schema.tables where table_schema = 'public'"
                )
            ).scalar_one()
        assert tables == 0
    finally:
        engine.dispose()
