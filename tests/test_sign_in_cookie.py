"""The password sign-in's cookie, end to end: the app served as `asgi.py` (what `make run`
starts) with AUTH_MODE=password on a loopback port, the real database, Debian's Chromium
through Playwright, and plain HTTP requests for what a browser would not send. A sign-in
survives a reload and a new tab, the cookie is HttpOnly, SameSite=Strict and Secure, its
token is in no URL, page or log, a sign-out in one tab ends every tab's, and the cookie's
routes cannot be driven from another site."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

from db.accounts import Accounts
from helpers import serve, shot
from session_cookie import CODE_HEADER, COOKIE, SIGN_IN_PATH, SIGN_OUT_HEADER, SIGN_OUT_PATH

PASSWORD = "correct horse battery"


@pytest.fixture
def password_app_url(db, pg_url, tmp_path, emoji_cache_dir):
    """The whole app with AUTH_MODE=password, and the account carol."""
    Accounts(db).create_account("carol", PASSWORD)
    yield from serve(pg_url, tmp_path, emoji_cache_dir, AUTH_MODE="password", ADMIN_USERS="boss")


def signed_in(page) -> None:
    page.locator("[data-testid='stSidebar']").get_by_text("Signed in as carol").wait_for()


def asked_to_sign_in(page) -> None:
    page.get_by_role("button", name="Sign in", exact=True).wait_for()
    # what the last run drew stays until the new run is done
    page.locator("[data-testid='stSidebar']").get_by_text("Signed in as").wait_for(state="hidden")


def session_cookie_of(context):
    return next((c for c in context.cookies() if c["name"] == COOKIE), None)


@pytest.mark.browser
def test_a_sign_in_survives_a_reload_and_a_new_tab_and_a_sign_out_ends_every_tab(
        password_app_url, browser_page, tmp_path):
    context = browser_page.context.browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(120_000)
    page = context.new_page()  # two tabs of one browser: one context, its cookies shared
    page.goto(password_app_url)
    form = page.locator("[data-testid='stForm']").first  # the "Sign in" tab's
    form.get_by_label("User name", exact=True).fill("carol")
    form.get_by_label("Password", exact=True).fill(PASSWORD)
    form.get_by_role("button", name="Sign in", exact=True).click()
    signed_in(page)
    shot(page, "cookie-1-signed-in")

    cookie = session_cookie_of(context)
    assert cookie is not None, "the sign-in left no session cookie"
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["secure"]
    assert cookie["path"] == "/" and cookie["expires"] > 0, "a cookie that lasts as long as the session"
    assert COOKIE not in page.evaluate("document.cookie"), "scripts cannot read it"
    token = cookie["value"]
    assert token not in page.url and token not in page.content()

    page.reload()
    signed_in(page)
    assert token not in page.url and token not in page.content()

    other = context.new_page()
    other.goto(password_app_url)
    signed_in(other)
    shot(other, "cookie-2-new-tab-signed-in")

    other.locator("[data-testid='stSidebar']").get_by_role("button", name="Sign out").click()
    asked_to_sign_in(other)
    for _ in range(300):  # the request that clears the cookie runs beside the page
        if session_cookie_of(context) is None:
            break
        other.wait_for_timeout(100)
    assert session_cookie_of(context) is None, "signing out clears the cookie"

    # The first tab, still showing the search, is asked to sign in at its next run.
    page.locator("[data-testid='stSidebarNav']").get_by_text("Import", exact=True).click()
    asked_to_sign_in(page)
    page.get_by_text("Your session has ended").wait_for()
    shot(page, "cookie-3-other-tab-signed-out")

    page.reload()
    asked_to_sign_in(page)
    log = (tmp_path / "streamlit.log").read_text()
    assert token not in log


def post(url: str, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, method="POST", headers=headers, data=b"")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers.get("Set-Cookie") or ""
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Set-Cookie") or ""


@pytest.mark.browser
def test_the_cookie_routes_refuse_other_sites_and_used_codes(password_app_url, db):
    accounts = Accounts(db)
    host = password_app_url.removeprefix("http://")
    here = {"Host": host, "Origin": password_app_url}
    sign_in = f"{password_app_url}/{SIGN_IN_PATH}"

    code = accounts.sign_in("carol", PASSWORD, one_time=True).token
    for headers in ({CODE_HEADER: code},  # no Origin: not a page's request
                    {"Origin": "http://evil.example", CODE_HEADER: code},
                    {**here, "Sec-Fetch-Site": "cross-site", CODE_HEADER: code},
                    {**here, CODE_HEADER: "made-up"},
                    {**here, CODE_HEADER: "x" * 5000}):
        status, cookie = post(sign_in, headers)
        assert status in (400, 403, 431) and not cookie, headers

    status, cookie = post(sign_in, {**here, "Sec-Fetch-Site": "same-origin", CODE_HEADER: code})
    assert status == 204
    attributes = [part.strip().casefold() for part in cookie.split(";")]
    token = cookie.split(";")[0].removeprefix(f"{COOKIE}=")
    assert accounts.user(token) == "carol"
    assert {"httponly", "samesite=strict", "secure", "path=/"} <= set(attributes)
    assert any(re.fullmatch(r"max-age=\d+", a) and int(a.split("=")[1]) > 3000 for a in attributes)
    assert post(sign_in, {**here, CODE_HEADER: code})[0] == 403, "a code works once"

    sign_out = f"{password_app_url}/{SIGN_OUT_PATH}"
    with_cookie = {**here, "Cookie": f"{COOKIE}={token}"}
    for headers in ({**with_cookie, "Origin": "http://evil.example", SIGN_OUT_HEADER: "1"},
                    with_cookie):  # a plain form post cannot send the header
        assert post(sign_out, headers)[0] == 403
        assert accounts.user(token) == "carol"
    status, cookie = post(sign_out, {**with_cookie, SIGN_OUT_HEADER: "1"})
    assert status == 204 and accounts.user(token) is None
    assert cookie.startswith(f'{COOKIE}=""') or cookie.startswith(f"{COOKIE}=;"), cookie
    assert "max-age=0" in cookie.casefold()


# ---------------------------------------------------------------------- the checks on their own


@pytest.mark.parametrize("headers, same", [
    ({"origin": "http://127.0.0.1:8501", "host": "127.0.0.1:8501"}, True),
    ({"origin": "https://mail.example.com", "host": "MAIL.example.com", "sec-fetch-site": "same-origin"}, True),
    ({"host": "127.0.0.1:8501"}, False),  # no Origin: no page of ours sent it
    ({"origin": "null", "host": "127.0.0.1:8501"}, False),
    ({"origin": "http://127.0.0.1:8502", "host": "127.0.0.1:8501"}, False),
    ({"origin": "http://evil.example", "host": "mail.example.com"}, False),
    ({"origin": "http://mail.example.com.evil.example", "host": "mail.example.com"}, False),
    ({"origin": "https://mail.example.com", "host": "mail.example.com", "sec-fetch-site": "same-site"}, False),
    ({"origin": "https://mail.example.com", "host": "mail.example.com", "sec-fetch-site": "cross-site"}, False),
    ({"origin": "javascript://mail.example.com", "host": "mail.example.com"}, False),
    ({"origin": "http://[::1", "host": "[::1"}, False),
    ({"origin": "http://" + "a" * 400, "host": "a" * 400}, False),
])
def test_only_a_page_of_this_origin_counts_as_the_same_origin(headers, same):
    from session_cookie import same_origin

    assert same_origin(headers) is same


@pytest.mark.parametrize("scheme, host, setting, secure", [
    ("https", "mail.example.com", "auto", True),
    ("http", "127.0.0.1:8501", "auto", True),  # Chromium and Firefox keep Secure cookies on loopback http
    ("http", "localhost:8501", "auto", True),
    ("http", "[::1]:8501", "auto", True),
    ("http", "mail.example.com", "auto", False),  # no browser would keep it
    ("http", "192.168.1.20:8501", "auto", False),
    ("http", "mail.example.com", "always", True),  # a proxy in front ends https
])
def test_the_cookie_is_secure_under_https_and_on_loopback(scheme, host, setting, secure):
    from session_cookie import secure as is_secure

    assert is_secure(scheme, host, setting) is secure
