"""Console sessions: a token for a cookie, CSRF on every change, sign-out ends the session
in the database, and the API takes the session as the token's own caller."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers

with warnings.catch_warnings():  # starlette's notice about httpx, not ours to fix
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from turnout.api.auth import Principal, Tokens
from turnout.api.deps import deployer, viewer
from turnout.api.sessions import (
    CSRF_HEADER,
    SESSION_COOKIE,
    Sessions,
    csrf_matches,
    csrf_token,
)
from turnout.console.app import Console, ConsoleDoor, same_origin
from turnout.console.pages import session_json, sign_in_page
from turnout.errors import Forbidden, TurnoutError, Unauthorized
from turnout.store import metadata as md
from turnout.store.db import Database
from turnout.store.records import TokenRole


@pytest.fixture
def tokens(tmp_path: Path) -> Iterator[Tokens]:
    db = Database.from_url(f"sqlite:///{tmp_path / 'turnout.db'}")
    db.migrate()
    yield Tokens(db)
    db.dispose()


def _api(tokens: Tokens) -> FastAPI:
    """A stand-in for the management API with its real auth dependencies."""
    api = FastAPI()
    api.state.services = type("Svc", (), {"tokens": tokens})()

    @api.get("/api/v1/whoami")
    def whoami(who: Principal = Depends(viewer)) -> dict[str, str]:
        return {"name": who.name, "role": who.role.value}

    @api.post("/api/v1/change")
    def change(who: Principal = Depends(deployer)) -> dict[str, str]:
        return {"by": who.name}

    @api.exception_handler(TurnoutError)
    async def _error(_: Request, exc: TurnoutError) -> Response:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    return api


@pytest.fixture
def browser(tokens: Tokens) -> Iterator[TestClient]:
    door = ConsoleDoor(_api(tokens), Console(Sessions(tokens)))
    with TestClient(door, follow_redirects=False) as client:
        yield client


def _sign_in(client: TestClient, token: str) -> str:
    answer = client.post("/ui/sign-in", data={"token": token})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui/"
    return str(client.cookies[SESSION_COOKIE])


def test_csrf_token_is_bound_to_the_session() -> None:
    assert csrf_token("a") == csrf_token("a")
    assert csrf_token("a") != csrf_token("b")
    assert csrf_matches("a", csrf_token("a"))
    assert not csrf_matches("a", csrf_token("b"))
    assert not csrf_matches("a", None)


def test_a_session_stands_for_its_token_until_it_ends(tokens: Tokens) -> None:
    secret, _ = tokens.create("ops", TokenRole.DEPLOYER, actor="admin")
    sessions = Sessions(tokens)
    signed_in = sessions.start(secret)
    assert signed_in.secret != secret
    assert sessions.principal(signed_in.secret).name == "ops"
    assert 0 < signed_in.max_age_s <= 12 * 3600
    sessions.end(signed_in.secret)
    with pytest.raises(Unauthorized, match="sign in again"):
        sessions.principal(signed_in.secret)
    sessions.end(signed_in.secret)  # ending twice is harmless
    with tokens.db.read() as conn:
        actions = [(e["actor"], e["action"]) for e in md.list_audit(conn, "ops")]
    assert ("ops", "session.start") in actions
    assert ("ops", "session.end") in actions


def test_every_worker_sees_a_session_and_its_end(tokens: Tokens, tmp_path: Path) -> None:
    """Two workers are two processes over one database: nothing lives in one's memory."""
    other = Database.from_url(f"sqlite:///{tmp_path / 'turnout.db'}")
    try:
        secret, _ = tokens.create("ops", TokenRole.DEPLOYER, actor="admin")
        signed_in = Sessions(tokens).start(secret)
        elsewhere = Sessions(Tokens(other))
        assert elsewhere.principal(signed_in.secret).name == "ops"
        elsewhere.end(signed_in.secret)
        with pytest.raises(Unauthorized):
            Sessions(tokens).principal(signed_in.secret)
    finally:
        other.dispose()


def test_a_revoked_token_ends_its_sessions(tokens: Tokens) -> None:
    secret, record = tokens.create("ops", TokenRole.VIEWER, actor="admin")
    sessions = Sessions(tokens)
    signed_in = sessions.start(secret)
    tokens.revoke(record.id, "admin")
    with pytest.raises(Unauthorized):
        sessions.principal(signed_in.secret)


def test_sessions_end_when_their_token_expires(tokens: Tokens) -> None:
    expiry = datetime.now(UTC) + timedelta(minutes=5)
    secret, _ = tokens.create("brief", TokenRole.VIEWER, actor="admin", expires_at=expiry)
    signed_in = Sessions(tokens).start(secret)
    assert signed_in.expires_at <= expiry
    assert signed_in.max_age_s <= 300


def test_unknown_and_predictor_tokens_get_no_session(tokens: Tokens) -> None:
    sessions = Sessions(tokens)
    with pytest.raises(Unauthorized):
        sessions.start("tnt_nope")
    with pytest.raises(Unauthorized, match="enter an API token"):
        sessions.start("  ")
    secret, _ = tokens.create("app", TokenRole.PREDICTOR, actor="admin")
    with pytest.raises(Forbidden, match="needs viewer"):
        sessions.start(secret)


def test_sign_in_sets_an_http_only_strict_cookie(browser: TestClient, tokens: Tokens) -> None:
    secret, _ = tokens.create("ops", TokenRole.DEPLOYER, actor="admin")
    assert browser.get("/ui/").headers["location"] == "/ui/sign-in"
    answer = browser.post("/ui/sign-in", data={"token": secret})
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    assert secret not in cookie
    page = browser.get("/ui/")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    me = browser.get("/ui/session").json()
    assert me["name"] == "ops"
    assert me["can_deploy"] is True
    assert me["is_admin"] is False
    assert me["csrf"] == csrf_token(browser.cookies[SESSION_COOKIE])
    assert secret not in str(me)


def test_a_wrong_token_shows_the_form_again(browser: TestClient) -> None:
    answer = browser.post("/ui/sign-in", data={"token": "<b>tnt_nope</b>"})
    assert answer.status_code == 401
    assert "invalid or revoked token" in answer.text
    assert SESSION_COOKIE not in browser.cookies


def test_sign_in_from_another_site_is_refused(browser: TestClient, tokens: Tokens) -> None:
    secret, _ = tokens.create("ops", TokenRole.VIEWER, actor="admin")
    forged = browser.post(
        "/ui/sign-in", data={"token": secret}, headers={"origin": "https://evil.example"}
    )
    assert forged.status_code == 403
    cross = browser.post(
        "/ui/sign-in", data={"token": secret}, headers={"sec-fetch-site": "cross-site"}
    )
    assert cross.status_code == 403
    assert SESSION_COOKIE not in browser.cookies


def test_the_api_takes_the_cookie_with_the_csrf_token(browser: TestClient, tokens: Tokens) -> None:
    secret, _ = tokens.create("ops", TokenRole.DEPLOYER, actor="admin")
    session = _sign_in(browser, secret)
    assert browser.get("/api/v1/whoami").json() == {"name": "ops", "role": "deployer"}
    forged = browser.post("/api/v1/change")
    assert forged.status_code == 403
    assert "CSRF" in forged.json()["error"]
    wrong = browser.post("/api/v1/change", headers={CSRF_HEADER: csrf_token("other")})
    assert wrong.status_code == 403
    done = browser.post("/api/v1/change", headers={CSRF_HEADER: csrf_token(session)})
    assert done.json() == {"by": "ops"}


def test_a_viewer_session_keeps_the_viewer_role(browser: TestClient, tokens: Tokens) -> None:
    secret, _ = tokens.create("reader", TokenRole.VIEWER, actor="admin")
    session = _sign_in(browser, secret)
    assert browser.get("/ui/session").json()["can_deploy"] is False
    refused = browser.post("/api/v1/change", headers={CSRF_HEADER: csrf_token(session)})
    assert refused.status_code == 403
    assert "needs deployer" in refused.json()["error"]


def test_a_bearer_token_needs_no_csrf_token(browser: TestClient, tokens: Tokens) -> None:
    secret, _ = tokens.create("ci", TokenRole.DEPLOYER, actor="admin")
    answer = browser.post("/api/v1/change", headers={"authorization": f"Bearer {secret}"})
    assert answer.json() == {"by": "ci"}


def test_sign_out_ends_the_session_on_the_server(browser: TestClient, tokens: Tokens) -> None:
    secret, _ = tokens.create("ops", TokenRole.VIEWER, actor="admin")
    session = _sign_in(browser, secret)
    assert browser.post("/ui/sign-out").status_code == 403  # no CSRF token
    out = browser.post("/ui/sign-out", headers={CSRF_HEADER: csrf_token(session)})
    assert out.status_code == 204
    assert SESSION_COOKIE not in browser.cookies
    browser.cookies.set(SESSION_COOKIE, session)  # a copy of the cookie kept elsewhere
    assert browser.get("/api/v1/whoami").status_code == 401
    assert browser.get("/ui/session").status_code == 401
    assert browser.get("/ui/").headers["location"] == "/ui/sign-in"


def test_static_files_are_served_without_sniffing(browser: TestClient) -> None:
    script = browser.get("/ui/static/js/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert script.headers["x-content-type-options"] == "nosniff"
    assert browser.get("/ui/static/vendor/uPlot.esm.js").status_code == 200
    assert browser.get("/ui/static/../app.py").status_code == 404
    assert browser.get("/ui").headers["location"] == "/ui/"


def test_sign_in_page_escapes_the_error() -> None:
    page = sign_in_page("<script>alert(1)</script>")
    assert "<script>alert" not in page
    assert "&lt;script&gt;" in page
    assert 'role="alert"' not in sign_in_page()


def test_session_json_says_what_the_role_may_do() -> None:
    viewer_json = session_json(Principal("r", TokenRole.VIEWER), csrf="c")
    admin_json = session_json(Principal("a", TokenRole.ADMIN), csrf="c")
    assert (viewer_json["can_deploy"], viewer_json["is_admin"]) == (False, False)
    assert (admin_json["can_deploy"], admin_json["is_admin"]) == (True, True)


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"host": "h:1"}, True),
        ({"host": "h:1", "origin": "http://h:1", "sec-fetch-site": "same-origin"}, True),
        ({"host": "h:1", "origin": "http://other:1"}, False),
        ({"host": "h:1", "origin": "null"}, False),
        ({"host": "h:1", "sec-fetch-site": "cross-site"}, False),
        ({"host": "h:1", "sec-fetch-site": "same-site"}, False),
    ],
)
def test_same_origin(headers: dict[str, str], allowed: bool) -> None:
    assert same_origin(Headers(headers)) is allowed
