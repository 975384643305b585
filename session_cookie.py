"""The password sign-in's cookie (AUTH_MODE=password): HttpOnly, SameSite=Strict, Secure under
https, holding the session's token, so that a reload or a new tab stays signed in.

Streamlit reads cookies (`st.context.cookies`, as the browser sent them when the page
connected) but cannot set one, and a cookie set by JavaScript cannot be HttpOnly. So the app
is served as an `st.App` (`asgi.py`) with two small routes of its own on the same origin, the
way `st.login` sets its cookie from a route of Streamlit's server:

- ``POST /account/session``: a fresh sign-in hands the browser a one-time code (never the
  token); the page posts it here in the ``X-Sign-In-Code`` header, and the answer's
  Set-Cookie holds the session opened for it (`db.accounts.Accounts.redeem`).
- ``POST /account/sign-out`` (header ``X-Sign-Out: 1``): ends the session the cookie names and
  expires the cookie.

Neither can be forged from another site: both want a header a cross-site form cannot send and a
cross-site script may not send without a CORS permission that is never given; the browser's
``Origin`` must name this host and ``Sec-Fetch-Site`` (when sent) must say same-origin; the
cookie is SameSite=Strict, so no other site's request carries it; and a code works once, within
a minute of the sign-in. The token is in no URL, page or log.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

COOKIE = "mailsearch_session"
SIGN_IN_PATH = "account/session"
SIGN_OUT_PATH = "account/sign-out"
CODE_HEADER = "X-Sign-In-Code"
SIGN_OUT_HEADER = "X-Sign-Out"
MAX_TOKEN = 128
_MOUNTED = "MAILSEARCH_SESSION_COOKIE_ROUTES"
"""Set in the server's environment once the routes are part of it (a flag in the environment,
not in this module: Streamlit reloads changed modules, the routes stay)."""


def mounted() -> bool:
    """Whether this server answers the cookie's routes (it was started as `asgi.py`); if not,
    a sign-in lasts as long as the browser tab, as no cookie can be set."""
    return os.environ.get(_MOUNTED) == "1"


def token(cookies: Mapping[str, str]) -> str | None:
    """The session token in the browser's cookies, if it looks like one."""
    value = cookies.get(COOKIE)
    return value if isinstance(value, str) and 0 < len(value) <= MAX_TOKEN else None


def url(path: str) -> str:
    """The route's path on this server (under server.baseUrlPath)."""
    from streamlit import config

    base = (config.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}/{path}" if base else f"/{path}"


# ---------------------------------------------------------------------- what the page runs


def redeem_script(code: str) -> str:
    """HTML for the page after a sign-in: a line saying so, and a script that trades the
    one-time code for the cookie and reloads, so the page connects again with it."""
    return (
        '<p id="mailsearch-signing-in">Signing you in…</p><script>(() => {'
        ' const failed = () => { const note = document.getElementById("mailsearch-signing-in");'
        ' if (note) note.textContent = "Signing in did not finish. Reload the page and sign in again."; };'
        f' fetch({json.dumps(url(SIGN_IN_PATH))}, {{method: "POST", credentials: "same-origin", cache: "no-store",'
        f' headers: {{{json.dumps(CODE_HEADER)}: {json.dumps(code)}}}}})'
        ' .then(answer => answer.status === 204 ? window.location.reload() : failed()).catch(failed);'
        ' })();</script>')


def clear_script() -> str:
    """A script that has the server end the cookie's session and expire the cookie."""
    return (
        f'<script>fetch({json.dumps(url(SIGN_OUT_PATH))}, {{method: "POST", credentials: "same-origin",'
        f' cache: "no-store", headers: {{{json.dumps(SIGN_OUT_HEADER)}: "1"}}}}).catch(() => {{}});</script>')


# ---------------------------------------------------------------------- the routes


def same_origin(headers: Mapping[str, str]) -> bool:
    """Whether a request comes from a page of this very origin: ``Origin`` (which browsers
    send with every POST) names the ``Host`` it was sent to, and ``Sec-Fetch-Site``, when the
    browser sends it, says same-origin."""
    origin, host = headers.get("origin"), headers.get("host")
    if not origin or not host or len(origin) > 300:
        return False
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or parts.netloc.casefold() != host.casefold():
        return False
    return headers.get("sec-fetch-site", "same-origin") == "same-origin"


def secure(scheme: str, host: str, setting: str) -> bool:
    """Whether the cookie gets the Secure flag: always under https (and with
    SESSION_COOKIE_SECURE=always); on plain http only for a loopback host, which Chrome and
    Firefox count as a secure context and keep Secure cookies for. Plain http to any other
    host gets none, as no browser would keep it there (and then the password travels in the
    clear anyway: serve the app over https)."""
    if scheme in ("https", "wss") or setting == "always":
        return True
    name = urlsplit(f"//{host}").hostname or ""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def routes() -> list:
    """The two routes, for `st.App(routes=...)`."""
    from starlette.responses import Response
    from starlette.routing import Route

    def refused(status: int, why: str) -> Response:
        return Response(why, status_code=status, media_type="text/plain", headers={"Cache-Control": "no-store"})

    def accounts_or_none():
        import app_state

        if app_state.settings().auth_mode != "password":
            return None
        return app_state.accounts()

    def with_cookie(request, value: str, max_age: int) -> Response:
        import app_state

        response = Response(status_code=204, headers={"Cache-Control": "no-store"})
        base = url("").rstrip("/") or "/"
        response.set_cookie(COOKIE, value, max_age=max_age, path=base, httponly=True, samesite="strict",
                            secure=secure(request.url.scheme, request.headers.get("host", ""),
                                          app_state.settings().session_cookie_secure))
        return response

    def sign_in(request) -> Response:  # a plain function: Starlette runs it on its thread pool
        from sqlalchemy.exc import SQLAlchemyError

        if not same_origin(request.headers):
            return refused(403, "Sign in from the app's own page.")
        try:
            accounts = accounts_or_none()
            if accounts is None:
                return refused(404, "Not found.")
            session = accounts.redeem(request.headers.get(CODE_HEADER))
        except SQLAlchemyError:
            return refused(503, "The database is not answering; sign in again in a moment.")
        if session is None:
            return refused(403, "That sign-in code is unknown, used or too old: sign in again.")
        return with_cookie(request, session.token, int(accounts.session_length.total_seconds()))

    def sign_out(request) -> Response:
        from sqlalchemy.exc import SQLAlchemyError

        if not same_origin(request.headers) or request.headers.get(SIGN_OUT_HEADER) != "1":
            return refused(403, "Sign out from the app's own page.")
        try:
            accounts = accounts_or_none()
            if accounts is None:
                return refused(404, "Not found.")
            accounts.sign_out(token(request.cookies))
        except SQLAlchemyError:
            pass  # the cookie goes all the same; its session's record ends when it expires
        return with_cookie(request, "", 0)

    os.environ[_MOUNTED] = "1"
    return [Route(url(SIGN_IN_PATH), sign_in, methods=["POST"]),
            Route(url(SIGN_OUT_PATH), sign_out, methods=["POST"])]
