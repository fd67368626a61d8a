"""The console at `/ui` (pages, scripts, sign-in and sign-out) and the door in front of the
management API that lets a signed-in browser call it with its session cookie.

The console holds no business logic: its scripts call `/api/v1` like the CLI does. What is
here is only the exchange of a token for a session, and the CSRF check that makes a cookie
safe to accept as a credential.
"""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request, cookie_parser
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles

from turnout.api.auth import Principal
from turnout.api.limits import ASGIApp, refuse
from turnout.api.sessions import (
    CSRF_HEADER,
    SESSION_COOKIE,
    Sessions,
    SignedIn,
    authorization,
    csrf_matches,
    csrf_token,
)
from turnout.console.pages import PAGE_HEADERS, session_json, sign_in_page
from turnout.errors import TurnoutError
from turnout.types import Message, Receive, Scope, Send

STATIC = Path(__file__).parent / "static"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_SIGN_IN_BYTES = 4096
CSRF_REFUSED = (
    f"missing or wrong CSRF token: a console request that changes anything must send the "
    f"{CSRF_HEADER} header from /ui/session"
)


def session_secret(headers: Headers) -> str | None:
    """The console session's secret from the request's cookie, if it carries one."""
    secret = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE)
    return secret or None


def same_origin(headers: Headers) -> bool:
    """Whether a browser request comes from this server's own pages (requests without the
    headers browsers add are not a browser's cross-site requests)."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    return origin != "null" and urlsplit(origin).netloc == headers.get("host")


class Console:
    """The `/ui` routes."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions
        self.router = Router(
            routes=[
                Route("/ui", self.to_index),
                Route("/ui/", self.index, methods=["GET", "HEAD"]),
                Route("/ui/sign-in", self.sign_in_form, methods=["GET", "HEAD"]),
                Route("/ui/sign-in", self.sign_in, methods=["POST"]),
                Route("/ui/session", self.session, methods=["GET"]),
                Route("/ui/sign-out", self.sign_out, methods=["POST"]),
                Mount("/ui/static", app=_no_sniff(StaticFiles(directory=STATIC))),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.router(scope, receive, send)

    async def to_index(self, _: Request) -> Response:
        return RedirectResponse("/ui/", status_code=HTTPStatus.SEE_OTHER)

    async def index(self, request: Request) -> Response:
        """The console's one page; signed-out browsers go to the sign-in form first."""
        if await self._principal_or_none(request) is None:
            return RedirectResponse("/ui/sign-in", status_code=HTTPStatus.SEE_OTHER)
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    async def sign_in_form(self, _: Request) -> Response:
        return HTMLResponse(sign_in_page(), headers=PAGE_HEADERS)

    async def sign_in(self, request: Request) -> Response:
        """The form's token for a session cookie; the token goes no further than this."""
        if not same_origin(request.headers):
            return _refused(HTTPStatus.FORBIDDEN, "sign-in must come from this server's page")
        declared = request.headers.get("content-length", "")
        if not declared.isdigit() or int(declared) > MAX_SIGN_IN_BYTES:
            return _refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "sign-in form too large")
        form = parse_qs((await request.body())[:MAX_SIGN_IN_BYTES].decode(errors="replace"))
        try:
            signed_in = await run_in_threadpool(self.sessions.start, form.get("token", [""])[0])
        except TurnoutError as exc:
            page = sign_in_page(exc.message)
            return HTMLResponse(page, status_code=int(exc.status), headers=PAGE_HEADERS)
        response = RedirectResponse("/ui/", status_code=HTTPStatus.SEE_OTHER)
        _set_cookie(response, signed_in, secure=request.url.scheme == "https")
        return response

    async def session(self, request: Request) -> Response:
        """Who is signed in, and the CSRF token for this session's changes."""
        secret = session_secret(request.headers)
        if secret is None:
            return _refused(HTTPStatus.UNAUTHORIZED, "not signed in")
        try:
            principal = await run_in_threadpool(self.sessions.principal, secret)
        except TurnoutError as exc:
            return _refused(exc.status, exc.message)
        body = session_json(principal, csrf=csrf_token(secret))
        return JSONResponse(body, headers={"cache-control": "no-store"})

    async def sign_out(self, request: Request) -> Response:
        """End the session on the server (every worker sees it ended) and drop the cookie."""
        secret = session_secret(request.headers)
        if secret is not None:
            if not csrf_matches(secret, request.headers.get(CSRF_HEADER)):
                return _refused(HTTPStatus.FORBIDDEN, CSRF_REFUSED)
            await run_in_threadpool(self.sessions.end, secret)
        response = Response(status_code=HTTPStatus.NO_CONTENT)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    async def _principal_or_none(self, request: Request) -> Principal | None:
        secret = session_secret(request.headers)
        if secret is None:
            return None
        try:
            return await run_in_threadpool(self.sessions.principal, secret)
        except TurnoutError:
            return None


class ConsoleDoor:
    """In front of the management API: `/ui` goes to the console. An API request carrying
    the session cookie and no Authorization header goes on with the session as its
    credential, once it shows the session's CSRF token if it changes anything."""

    def __init__(self, api: ASGIApp, console: Console) -> None:
        self.api = api
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path == "/ui" or path.startswith("/ui/"):
                await self.console(scope, receive, send)
                return
            if path.startswith("/api/"):
                headers = Headers(scope=scope)
                secret = session_secret(headers)
                if secret is not None and "authorization" not in headers:
                    if scope["method"] not in SAFE_METHODS and not csrf_matches(
                        secret, headers.get(CSRF_HEADER)
                    ):
                        await refuse(send, HTTPStatus.FORBIDDEN, CSRF_REFUSED)
                        return
                    scope = _with_authorization(scope, authorization(secret))
        await self.api(scope, receive, send)


def _with_authorization(scope: Scope, value: str) -> Scope:
    headers = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
    return {**scope, "headers": [*headers, (b"authorization", value.encode())]}


def _set_cookie(response: Response, signed_in: SignedIn, *, secure: bool) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        signed_in.secret,
        max_age=signed_in.max_age_s,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def _refused(status: int, message: str) -> Response:
    return JSONResponse(
        {"error": message}, status_code=status, headers={"cache-control": "no-store"}
    )


def _no_sniff(app: ASGIApp) -> ASGIApp:
    """Static files with `x-content-type-options: nosniff`, revalidated on every load."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-cache")]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await app(scope, receive, send_with_headers)

    return wrapped
