"""TURNOUT_ADMIN_TOKEN: one operator-chosen admin token shared by every node of a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnout.api.auth import Tokens
from turnout.errors import BadRequest, Forbidden
from turnout.store import metadata as md
from turnout.store.db import Database
from turnout.store.records import TokenRole

GIVEN = "cluster-admin-token-0123456789abcdef"


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database.from_url(f"sqlite:///{tmp_path / 'shared.db'}")
    database.migrate()
    return database


def admins(db: Database) -> int:
    with db.read() as conn:
        return sum(1 for r in md.list_tokens(conn) if r.role is TokenRole.ADMIN)


def test_every_node_accepts_the_given_token_and_none_makes_its_own(
    db: Database, tmp_path: Path
) -> None:
    for node in ("a", "b", "a"):  # two nodes, and the first one restarted
        path = tmp_path / node / "admin.token"
        assert Tokens(db).ensure_admin(path, GIVEN) == GIVEN
        assert path.read_text().strip() == GIVEN
        assert path.stat().st_mode & 0o777 == 0o600
    assert admins(db) == 1
    assert Tokens(db).authenticate(f"Bearer {GIVEN}").role is TokenRole.ADMIN


def test_a_revoked_given_token_is_never_brought_back(db: Database, tmp_path: Path) -> None:
    tokens = Tokens(db)
    tokens.ensure_admin(tmp_path / "a" / "admin.token", GIVEN)
    record = next(r for r in tokens.list_all() if r.role is TokenRole.ADMIN)
    tokens.revoke(record.id, actor="admin")
    with pytest.raises(Forbidden, match="revoked"):
        tokens.ensure_admin(tmp_path / "b" / "admin.token", GIVEN)
    assert admins(db) == 1


def test_a_short_given_token_is_refused_naming_the_setting(db: Database, tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="TURNOUT_ADMIN_TOKEN is too short"):
        Tokens(db).ensure_admin(tmp_path / "admin.token", "abc")
    assert admins(db) == 0
