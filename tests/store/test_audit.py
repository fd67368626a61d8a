"""The audit log is read newest first, filtered, a page at a time, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.store.test_metadata import db
from turnout.store import metadata as md
from turnout.store.audit import AuditQuery, find_audit
from turnout.store.db import Database

__all__ = ["db"]


def test_filters_and_pages(db: Database) -> None:
    with db.write() as conn:
        for i in range(5):
            md.audit(conn, actor="alice", action="token.create", target=f"t{i}", detail={})
        md.audit(conn, actor="bob", action="rollout.start", target="fraud", detail={"v": 2})
        md.audit(conn, actor="bob", action="token_like.x", target="t0", detail={})
    with db.read() as conn:
        newest = find_audit(conn, AuditQuery(limit=2))
        assert [e["action"] for e in newest] == ["token_like.x", "rollout.start"]
        tokens = find_audit(conn, AuditQuery(action="token."))
        assert [e["target"] for e in tokens] == ["t4", "t3", "t2", "t1", "t0"]
        page = find_audit(conn, AuditQuery(action="token.", limit=2))
        rest = find_audit(conn, AuditQuery(action="token.", before_id=int(page[-1]["id"])))
        assert [e["target"] for e in page + rest] == ["t4", "t3", "t2", "t1", "t0"]
        assert [e["actor"] for e in find_audit(conn, AuditQuery(target="t0"))] == ["bob", "alice"]
        assert len(find_audit(conn, AuditQuery(actor="bob"))) == 2
        future = datetime.now(UTC) + timedelta(minutes=5)
        assert find_audit(conn, AuditQuery(since=future)) == []
        past = datetime.now(UTC) - timedelta(minutes=5)
        assert len(find_audit(conn, AuditQuery(since=past))) == 7
