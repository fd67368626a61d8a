"""What the console's own routes answer: the sign-in page, the session as page scripts see
it, and the headers every console page carries."""

from __future__ import annotations

import html

from turnout.api.auth import Principal
from turnout.store.records import TokenRole
from turnout.types import JSON

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
"""Console pages run only their own scripts, load only from this server, are never framed
and are never cached (they may show what only a signed-in user may see)."""


def session_json(principal: Principal, *, csrf: str) -> dict[str, JSON]:
    """The signed-in user as page scripts see it: who, what they may do, and the CSRF token
    they must send with every change (never the token or the cookie's secret)."""
    return {
        "name": principal.name,
        "role": principal.role.value,
        "can_deploy": principal.role.allows(TokenRole.DEPLOYER),
        "is_admin": principal.role.allows(TokenRole.ADMIN),
        "csrf": csrf,
    }


def sign_in_page(error: str | None = None) -> str:
    """The sign-in form: a plain HTML form posted by the browser itself, so no page script
    ever holds the token."""
    alert = (
        f'<p class="error" role="alert" id="sign-in-error">{html.escape(error)}</p>'
        if error
        else ""
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · turnout</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/static/console.css">
</head>
<body class="sign-in">
<main id="main">
<h1>turnout console</h1>
<form method="post" action="/ui/sign-in" class="card" autocomplete="off">
<label for="token">API token</label>
<input id="token" name="token" type="password" required autofocus autocomplete="off"
 aria-describedby="token-help" spellcheck="false">
<p id="token-help" class="help">A token from <code>turnout tokens create</code>, or the
admin token the server wrote to its home. The browser keeps only a session cookie.</p>
{alert}
<button type="submit" id="sign-in">Sign in</button>
</form>
</main>
</body>
</html>
"""
