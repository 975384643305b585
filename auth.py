"""Who is using the app, and what they may open (AUTH_MODE).

- ``none``: one local user, DEFAULT_OWNER, who is also the admin: the embedded default for one
  person on their own machine.
- ``password``: accounts in PostgreSQL (`db.accounts`): sign up, sign in, sign out; the
  session's token lives in an HttpOnly cookie (`session_cookie`), so a reload and every tab of
  the browser stay signed in until SESSION_HOURS have passed or the user signs out in any of
  them. Served without the cookie's routes (``streamlit run app.py``), the token lives in the
  browser tab's session state instead.
- ``oidc``: Streamlit's `st.login`, configured in `.streamlit/secrets.toml` ([auth]); the user is
  known by the e-mail address the identity provider vouches for (``email_verified`` true).

Each user's mail is filed under their name (the ``owner`` of every `mail/` query). Settings and
Savings are for ADMIN_USERS only: they show every user's topics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import streamlit as st
from sqlalchemy.exc import InterfaceError, OperationalError

import app_state
import session_cookie

TOKEN = "auth_token"
"""The session's token, when it lives in the tab's state (served without the cookie's routes)."""
COOKIE_OVER = "auth_cookie_over"
"""The cookie this tab connected with names a session that has ended: it is not asked again."""
PENDING = "auth_cookie_pending"
"""What the page still has the browser do with the cookie: ("redeem", code) or ("clear", None)."""
DATABASE_ERRORS = (OperationalError, InterfaceError)


@dataclass(frozen=True)
class User:
    name: str
    """The owner of this user's mail: the local owner, the account name, or the e-mail address."""
    is_admin: bool


def mode() -> str:
    return app_state.settings().auth_mode


def current_user() -> User | None:
    """The signed-in user of this browser session, or None."""
    settings = app_state.settings()
    if settings.auth_mode == "none":
        return User(settings.default_owner, is_admin=True)
    if settings.auth_mode == "oidc":
        return oidc_user(st.user, settings.admins) if st.user.is_logged_in else None
    token, from_cookie = _session_token()
    if not token:
        return None
    try:
        name = app_state.accounts().user(token)
    except DATABASE_ERRORS as exc:  # the session is kept: it is checked again once the database is back
        app_state.database_down(exc)
    if name is None:  # expired, or signed out in this tab or another
        st.session_state.pop(TOKEN, None)
        if from_cookie:
            st.session_state[COOKIE_OVER] = True
            if session_cookie.mounted():
                st.session_state[PENDING] = ("clear", None)
        st.session_state["auth_notice"] = "Your session has ended; sign in again."
        return None
    return User(name, is_admin=name in settings.admins)


def _session_token() -> tuple[str | None, bool]:
    """This tab's session token, and whether it came from the cookie: the tab's own (served
    without the cookie's routes), else the cookie the browser sent when the page connected,
    unless that one has ended."""
    token = st.session_state.get(TOKEN)
    if token:
        return token, False
    if st.session_state.get(COOKIE_OVER):
        return None, False
    return session_cookie.token(st.context.cookies), True


def email_verified(info: Mapping[str, object]) -> bool:
    """Whether the identity provider says the address is the user's: ``email_verified`` true
    (a boolean, or the string some providers send); missing or anything else is not."""
    value = info.get("email_verified")
    return value is True or (isinstance(value, str) and value.strip().casefold() == "true")


def oidc_user(info: Mapping[str, object], admins: frozenset[str]) -> User | None:
    """The user an identity provider's user info names: its e-mail address, only once verified."""
    email = str(info.get("email") or "").strip().casefold()
    if not email or not email_verified(info):
        return None
    return User(email, is_admin=email in admins)


def client_address() -> str | None:
    """The address this browser session connects from, when Streamlit knows it (not on localhost)."""
    try:
        address = st.context.ip_address
    except Exception:  # no session context (a script run outside a server)
        return None
    return address if isinstance(address, str) and address else None


def require_user() -> User:
    """The signed-in user, or a sign-in prompt and the end of this page's run."""
    user = current_user()
    if user is None:
        st.warning("Sign in to see this page.", icon=":material/lock:")
        st.page_link("app.py", label="Sign in", icon=":material/login:")
        st.stop()
    return user


def require_admin() -> User:
    user = require_user()
    if not user.is_admin:
        st.error("This page is for administrators.", icon=":material/block:")
        st.stop()
    return user


# ---------------------------------------------------------------------- signing in and out


def sign_in_page() -> None:
    st.title("✉️ Mail search")
    action, code = st.session_state.pop(PENDING, (None, None))
    if action == "redeem":  # the browser trades the code for the cookie, then connects again
        st.html(session_cookie.redeem_script(code), unsafe_allow_javascript=True)
        return
    if action == "clear":
        st.html(session_cookie.clear_script(), unsafe_allow_javascript=True)
    notice = st.session_state.pop("auth_notice", None)
    if notice:
        st.info(notice)
    if mode() == "oidc":
        _oidc_sign_in()
    else:
        _password_sign_in()


def _oidc_sign_in() -> None:
    from app_state import md

    st.write("Sign in with your organisation's account to search your mail.")
    if st.user.is_logged_in:
        if not st.user.get("email"):
            st.error("Your identity provider did not share a verified e-mail address, which this app needs.")
        elif not email_verified(st.user):
            st.error(f"Your identity provider has not confirmed that {md(st.user.get('email'))} is your address, "
                     "so this app cannot sign you in with it. Confirm the address with your provider, then sign in "
                     "again.")
        st.button("Sign out", on_click=st.logout, icon=":material/logout:", key="oidc_sign_out")
    try:
        configured = "auth" in st.secrets
    except FileNotFoundError:
        configured = False
    if not configured:
        st.error("Sign-in is not set up: AUTH_MODE is oidc, but `.streamlit/secrets.toml` has no [auth] section. "
                 "See the README.")
        return
    st.button("Sign in", on_click=st.login, type="primary", icon=":material/login:")


def _password_sign_in() -> None:
    from db.accounts import AccountError

    settings = app_state.settings()
    try:
        app_state.accounts()  # on first start, the first admin's account (ADMIN_PASSWORD_FILE)
    except DATABASE_ERRORS as exc:
        app_state.database_down(exc)
    tabs = st.tabs(["Sign in", "Create an account"] if settings.allow_signup else ["Sign in"])
    with tabs[0]:
        with st.form("sign_in", clear_on_submit=False):
            name = st.text_input("User name", key="sign_in_name", autocomplete="username")
            password = st.text_input("Password", type="password", key="sign_in_password",
                                     autocomplete="current-password")
            submitted = st.form_submit_button("Sign in", type="primary")
        if submitted:
            try:
                session = app_state.accounts().sign_in(name, password, one_time=session_cookie.mounted())
            except AccountError as exc:
                st.error(str(exc))
            except DATABASE_ERRORS as exc:
                app_state.database_down(exc, note="You are not signed in yet: sign in again in a moment.")
            else:
                _start(session)
    if settings.allow_signup:
        with tabs[1]:
            with st.form("sign_up"):
                name = st.text_input("User name", key="sign_up_name", autocomplete="username",
                                     help="3 to 64 characters: letters, digits and . _ @ + -")
                password = st.text_input("Password", type="password", key="sign_up_password",
                                         autocomplete="new-password", help="At least 10 characters.")
                again = st.text_input("Password again", type="password", key="sign_up_again",
                                      autocomplete="new-password")
                submitted = st.form_submit_button("Create the account", type="primary")
            if submitted:
                if password != again:
                    st.error("The two passwords differ.")
                else:
                    try:
                        session = app_state.accounts().sign_up(name, password, client=client_address(),
                                                               one_time=session_cookie.mounted())
                    except AccountError as exc:
                        st.error(str(exc))
                    except DATABASE_ERRORS as exc:
                        app_state.database_down(exc, note="The account was not created: try again in a moment.")
                    else:
                        _start(session)


def _start(session) -> None:
    """Signed in: the browser gets the cookie (from a one-time code) or, served without the
    cookie's routes, the tab keeps the token."""
    for key in ("sign_in_password", "sign_up_password", "sign_up_again"):
        st.session_state.pop(key, None)
    if session.one_time:
        st.session_state[PENDING] = ("redeem", session.token)
    else:
        st.session_state[TOKEN] = session.token
    st.rerun()


def sign_out() -> None:
    if mode() == "oidc":
        st.logout()
        return
    token, _ = _session_token()
    try:
        app_state.accounts().sign_out(token)  # every tab holding this session is signed out at its next run
        unreached = False
    except DATABASE_ERRORS:
        unreached = True
    # Nothing of the last user's session may be left for the next one in this browser.
    for key in list(st.session_state.keys()):
        if key != TOKEN:
            del st.session_state[key]
    st.session_state[TOKEN] = None
    st.session_state[COOKIE_OVER] = True
    if session_cookie.mounted():
        st.session_state[PENDING] = ("clear", None)  # and the cookie goes (the server ends its session too)
    if unreached:
        st.session_state["auth_notice"] = ("You are signed out of this browser. The database did not answer, "
                                           "so the session's record ends when it expires.")


def sidebar(user: User) -> None:
    if mode() == "none":
        return
    with st.sidebar:
        st.caption(f"Signed in as **{app_state.md(user.name)}**" + (" · admin" if user.is_admin else ""))
        st.button("Sign out", on_click=sign_out, icon=":material/logout:", key="sign_out")
