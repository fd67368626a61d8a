"""`GET /api/v1/audit` (admin): who did what, newest first, filtered and paged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from turnout.api.auth import Principal
from turnout.api.deps import Services, admin, services
from turnout.duration import parse_duration
from turnout.errors import BadRequest
from turnout.store.audit import MAX_PAGE, AuditQuery, find_audit
from turnout.types import JSON

router = APIRouter(tags=["audit"])


@router.get("/audit")
def read_audit(
    svc: Annotated[Services, Depends(services)],
    _: Annotated[Principal, Depends(admin)],
    since: Annotated[str | None, Query(description="`1h`, `7d`, or an ISO time")] = None,
    actor: str | None = None,
    action: Annotated[str | None, Query(description="a prefix, e.g. `token.`")] = None,
    target: str | None = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> dict[str, JSON]:
    """One page of entries; pass `next_before_id` as `before_id` for the next page."""
    query = AuditQuery(
        since=_since(since),
        actor=actor,
        action=action,
        target=target,
        before_id=before_id,
        limit=limit,
    )
    with svc.tokens.db.read() as conn:
        entries = find_audit(conn, query)
    more = len(entries) == limit
    return {"entries": entries, "next_before_id": entries[-1]["id"] if more else None}


def _since(text: str | None) -> datetime | None:
    """`1h` (that long ago) or an ISO time (UTC unless it says otherwise)."""
    if text is None:
        return None
    try:
        return datetime.now(UTC) - timedelta(seconds=min(parse_duration(text), 1e10))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        message = f"since must be a duration such as 1h or 7d, or an ISO time, not {text!r}"
        raise BadRequest(message) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
