"""Accounts and isolation (AUTH_MODE none / password / oidc, admins, one user's mail kept from
another) and the cost guard (a daily limit per user and a daily budget for everyone). Real
parts: the embedded PostgreSQL, the local model, the offline pictures, Streamlit's AppTest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from streamlit.testing.v1 import AppTest

import auth
from db.accounts import LOCK_AFTER, AccountError, Accounts
from mail.search import message, search, thread
from mail.store import import_messages
from semcache import BudgetExceeded, CacheAdmin, GenerationError, SemanticCache
from semcache.blobstores import LocalBlobStore
from semcache.budget import CostGuard
from helpers import LABELLED, mail, raw
from conftest import picture_shown

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
SEARCH = str(ROOT / "pages" / "search.py")
SETTINGS = str(ROOT / "pages" / "cache_settings.py")
SAVINGS = str(ROOT / "pages" / "savings.py")
TIMEOUT = 180
PASSWORD = "correct horse battery"


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


# ---------------------------------------------------------------------- accounts


@pytest.fixture
def accounts(db) -> Accounts:
    return Accounts(db, session_hours=1)


class CountingHasher(PasswordHasher):
    """argon2-cffi's hasher, counting the password checks it runs and how many failed."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.checks = self.wrong = 0

    def verify(self, hash, password):
        with self.lock:
            self.checks += 1
        try:
            return super().verify(hash, password)
        except VerificationError:
            with self.lock:
                self.wrong += 1
            raise


def test_sign_up_and_sign_in(accounts, db):
    session = accounts.sign_up("  Alice ", PASSWORD)
    assert session.username == "alice" and accounts.user(session.token) == "alice"
    with db.connect() as conn:
        stored = conn.execute(text("SELECT password_hash FROM app_users WHERE username = 'alice'")).scalar()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    again = accounts.sign_in("ALICE", PASSWORD)
    assert again.token != session.token and accounts.user(again.token) == "alice"
    with db.connect() as conn:  # only digests of the tokens are stored
        hashes = conn.execute(text("SELECT token_hash FROM app_sessions")).scalars().all()
    assert len(hashes) == 2 and session.token not in hashes and again.token not in hashes


@pytest.mark.parametrize("name, password, why", [
    ("al", PASSWORD, "3 to 64 characters"),
    ("al ice", PASSWORD, "3 to 64 characters"),
    ("alice", "short", "at least 10"),
    ("alice", "x" * 300, "at least 10"),
    ("alicealice", "AliceAlice", "cannot be the user name"),
])
def test_sign_up_refuses_bad_names_and_passwords(accounts, name, password, why):
    with pytest.raises(AccountError, match=why):
        accounts.sign_up(name, password)


def test_names_are_unique_and_wrong_passwords_lock_for_a_while(accounts, db):
    accounts.sign_up("alice", PASSWORD)
    with pytest.raises(AccountError, match="taken"):
        accounts.sign_up("Alice", "another password")
    with pytest.raises(AccountError, match="do not match"):
        accounts.sign_in("nobody", PASSWORD)
    for _ in range(LOCK_AFTER):
        with pytest.raises(AccountError, match="do not match"):
            accounts.sign_in("alice", "wrong password")
    with pytest.raises(AccountError, match="try again in a minute"):
        accounts.sign_in("alice", PASSWORD)  # even the right password, while locked
    with db.begin() as conn:
        conn.execute(text("UPDATE app_users SET locked_until = now() - interval '1 second'"))
    assert accounts.sign_in("alice", PASSWORD).username == "alice"


def attempt(accounts: Accounts, name: str, password: str) -> str:
    try:
        accounts.sign_in(name, password)
        return "signed in"
    except AccountError as exc:
        return "locked" if "try again in a minute" in str(exc) else "wrong"


def test_simultaneous_wrong_passwords_cannot_outrun_the_lock(accounts, db):
    """39 wrong passwords at once and then the right one: five are checked, and the right one
    finds the account locked."""
    accounts.sign_up("alice", PASSWORD)
    hasher = CountingHasher()
    racing = Accounts(db, hasher=hasher)
    hasher.checks = hasher.wrong = 0
    wrong = 39
    barrier = threading.Barrier(wrong)

    def guess(i: int) -> str:
        barrier.wait()
        return attempt(racing, "alice", f"wrong password {i}")

    def right() -> str:
        deadline = time.monotonic() + 30
        while hasher.checks < LOCK_AFTER and time.monotonic() < deadline:  # the guesses are being checked
            time.sleep(0.001)
        return attempt(racing, "alice", PASSWORD)

    with ThreadPoolExecutor(wrong + 1) as pool:
        guesses = [pool.submit(guess, i) for i in range(wrong)]
        last = pool.submit(right)
        outcomes = [g.result() for g in guesses]
    assert last.result() == "locked", "the right password came after five wrong ones"
    assert hasher.wrong <= LOCK_AFTER and outcomes.count("wrong") <= LOCK_AFTER, (hasher.wrong, outcomes)
    assert outcomes.count("locked") >= wrong - LOCK_AFTER
    with db.connect() as conn:
        failed, locked = conn.execute(text("SELECT failed_sign_ins, locked_until > now() FROM app_users")).one()
    assert failed == LOCK_AFTER and locked


def test_names_with_no_account_are_limited_like_accounts(accounts, db):
    hasher = CountingHasher()
    racing = Accounts(db, hasher=hasher)
    hasher.checks = 0
    barrier = threading.Barrier(20)

    def guess(i: int) -> str:
        barrier.wait()
        return attempt(racing, "nobody", f"guess number {i}")

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(guess, range(20)))
    assert outcomes.count("wrong") == LOCK_AFTER and outcomes.count("locked") == 20 - LOCK_AFTER
    assert hasher.checks == LOCK_AFTER, "a locked name costs no password check"
    assert attempt(racing, "NoBody ", "another guess") == "locked", "the same name, however written"
    assert attempt(racing, "somebody", "a first guess") == "wrong", "other names are not held back"

    with db.begin() as conn:  # an hour after its last wrong attempt a name is forgotten
        conn.execute(text("UPDATE app_sign_in_failures SET locked_until = now() - interval '1 minute', "
                          "last_failed_at = now() - interval '61 minutes' WHERE username = 'nobody'"))
    assert attempt(racing, "elsewhere", "a first guess") == "wrong"
    with db.connect() as conn:
        kept = set(conn.execute(text("SELECT username FROM app_sign_in_failures")).scalars())
    assert kept == {"somebody", "elsewhere"}

    racing.sign_up("nobody", PASSWORD)  # a name signed up for starts with a clean slate
    assert racing.sign_in("nobody", PASSWORD).username == "nobody"


def test_sign_up_refuses_the_admins_names(db):
    accounts = Accounts(db, admins=["Boss", " root ", "king"])
    for name in ("boss", "BOSS", " Boss ", "root", "\u212aing"):  # U+212A KELVIN SIGN case-folds to k
        with pytest.raises(AccountError, match="reserved"):
            accounts.sign_up(name, PASSWORD)
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM app_users")).scalar() == 0
    assert accounts.sign_up("bossy", PASSWORD).username == "bossy"


def test_sign_ups_are_limited_per_hour_in_total_and_per_client(db):
    accounts = Accounts(db, signups_per_hour=3, signups_per_client_per_hour=2)
    accounts.sign_up("ann", PASSWORD, client="198.51.100.7")
    accounts.sign_up("ben", PASSWORD, client="198.51.100.7")
    with pytest.raises(AccountError, match="from your network address in the last hour"):
        accounts.sign_up("cat", PASSWORD, client="198.51.100.7")
    accounts.sign_up("cat", PASSWORD, client="203.0.113.9")
    with pytest.raises(AccountError, match="Too many accounts were created in the last hour"):
        accounts.sign_up("dan", PASSWORD, client="192.0.2.1")
    with db.begin() as conn:
        conn.execute(text("UPDATE app_signups SET created_at = now() - interval '61 minutes'"))
    accounts.sign_up("dan", PASSWORD, client="198.51.100.7")
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM app_signups")).scalar() == 1, "older sign-ups are forgotten"


def test_simultaneous_sign_ups_never_overshoot_the_limit(db):
    accounts = Accounts(db, signups_per_hour=3)
    barrier = threading.Barrier(10)

    def one(i: int) -> bool:
        barrier.wait()
        try:
            accounts.sign_up(f"user{i}", PASSWORD)
            return True
        except AccountError:
            return False

    with ThreadPoolExecutor(10) as pool:
        assert sum(pool.map(one, range(10))) == 3
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM app_users")).scalar() == 3


def create_account(pg_url: str, tmp_path: Path, *args: str, password: str) -> subprocess.CompletedProcess:
    """``python -m db.accounts ARGS`` in a process of its own, the password piped to it."""
    env = {**os.environ, "DATABASE_URL": pg_url, "DATA_DIR": str(tmp_path), "ADMIN_USERS": "boss",
           "AUTH_MODE": "password"}
    return subprocess.run([sys.executable, "-m", "db.accounts", *args], cwd=ROOT, env=env,
                          input=password, capture_output=True, text=True, timeout=120)


def account_command(monkeypatch, capsys, *args: str, password: str) -> tuple[int, str]:
    """The same command in this process (the app's settings of the test), for its refusals."""
    import io

    from db.accounts import main

    monkeypatch.setattr(sys, "stdin", io.StringIO(password))
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_the_command_creates_an_admin_account(password_mode, db, pg_url, tmp_path, monkeypatch, capsys):
    done = create_account(pg_url, tmp_path, "create-admin", "Boss", password="\n")
    assert done.returncode == 1 and "A password is at least 10 characters long" in done.stderr
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM app_users")).scalar() == 0
    done = create_account(pg_url, tmp_path, "create-admin", "Boss", password=PASSWORD + "\n")
    assert done.returncode == 0 and "The administrator boss can sign in" in done.stdout, done.stderr
    assert PASSWORD not in done.stdout + done.stderr

    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    app.text_input(key="sign_in_name").input("boss")
    app.text_input(key="sign_in_password").input(PASSWORD)
    next(b for b in app.button if b.label == "Sign in").click().run()
    assert not app.exception, app.exception
    assert "Signed in as **boss** · admin" in texts(app.sidebar.caption)

    code, said = account_command(monkeypatch, capsys, "create-admin", "carol", password=PASSWORD + "\n")
    assert code == 1 and "carol is not in ADMIN_USERS" in said
    code, said = account_command(monkeypatch, capsys, "create-admin", "boss", password="another password\n")
    assert code == 1 and "exists already; nothing was changed" in said
    assert Accounts(db).sign_in("boss", PASSWORD).username == "boss"
    code, said = account_command(monkeypatch, capsys, "create-admin", "boss", "--replace",
                                 password="another password\n")
    assert code == 0, said
    assert Accounts(db).sign_in("boss", "another password").username == "boss"
    with pytest.raises(AccountError):
        Accounts(db).sign_in("boss", PASSWORD)

    code, said = account_command(monkeypatch, capsys, "create-user", "boss", password=PASSWORD + "\n")
    assert code == 1 and "make its account with create-admin" in said
    code, said = account_command(monkeypatch, capsys, "create-user", "carol", password=PASSWORD + "\n")
    assert code == 0 and "The user carol can sign in" in said
    assert Accounts(db).sign_in("carol", PASSWORD).username == "carol"


def test_the_command_asks_twice_at_a_terminal(db, pg_url, tmp_path):
    """At a terminal the password is asked for with getpass, twice, and never echoed."""
    import pty
    import select

    def at_a_terminal(*typed: str) -> tuple[int, str]:
        leader, follower = pty.openpty()
        env = {**os.environ, "DATABASE_URL": pg_url, "DATA_DIR": str(tmp_path), "ADMIN_USERS": "boss"}
        process = subprocess.Popen([sys.executable, "-m", "db.accounts", "create-admin", "boss"], cwd=ROOT, env=env,
                                   stdin=follower, stdout=follower, stderr=follower, start_new_session=True)
        os.close(follower)
        shown, answers, answered_at = b"", list(typed), 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if not select.select([leader], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(leader, 1024)
            except OSError:  # the command ended and closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            if answers and shown[answered_at:].rstrip().endswith(b":"):  # a new prompt
                os.write(leader, answers.pop(0).encode() + b"\n")
                answered_at = len(shown)
        os.close(leader)
        return process.wait(timeout=10), shown.decode(errors="replace")

    code, shown = at_a_terminal(PASSWORD, "not the same password")
    assert code == 1 and "The two passwords differ." in shown
    code, shown = at_a_terminal(PASSWORD, PASSWORD)
    assert code == 0 and "The administrator boss can sign in" in shown, shown
    assert "Password for boss:" in shown and PASSWORD not in shown, "asked for, and not echoed"
    assert Accounts(db).sign_in("boss", PASSWORD).username == "boss"


def test_the_first_start_creates_the_admin_from_a_file(password_mode, monkeypatch, db, tmp_path):
    import app_state
    import settings as settings_module

    secret = tmp_path / "admin-password"
    secret.write_text(PASSWORD + "\n")
    monkeypatch.setenv("ADMIN_USERS", "Boss, deputy")
    monkeypatch.setenv("ADMIN_PASSWORD_FILE", str(secret))
    settings_module.get_settings.cache_clear()
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not app.exception, app.exception
    assert Accounts(db).sign_in("boss", PASSWORD).username == "boss"

    secret.write_text("a different password\n")  # once: an existing account is never changed
    app_state.accounts.clear()
    AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert Accounts(db).sign_in("boss", PASSWORD).username == "boss"
    with db.connect() as conn:
        assert conn.execute(text("SELECT array_agg(username) FROM app_users")).scalar() == ["boss"]


def test_the_page_refuses_admin_names_and_sign_ups_over_the_limit(password_mode, monkeypatch):
    import settings as settings_module

    monkeypatch.setenv("SIGNUPS_PER_HOUR", "1")
    settings_module.get_settings.cache_clear()
    app = sign_up(AppTest.from_file(APP, default_timeout=TIMEOUT).run(), "Boss")
    assert "That user name is reserved; choose another." in texts(app.error)
    assert "auth_token" not in app.session_state
    sign_up(AppTest.from_file(APP, default_timeout=TIMEOUT).run(), "carol")
    app = sign_up(AppTest.from_file(APP, default_timeout=TIMEOUT).run(), "dave")
    assert "Too many accounts were created in the last hour; try again later." in texts(app.error)


def test_sessions_expire_and_sign_out_ends_them(accounts, db):
    first = accounts.sign_up("alice", PASSWORD)
    second = accounts.sign_in("alice", PASSWORD)
    accounts.sign_out(first.token)
    assert accounts.user(first.token) is None and accounts.user(second.token) == "alice"
    with db.begin() as conn:
        conn.execute(text("UPDATE app_sessions SET expires_at = now() - interval '1 second'"))
    assert accounts.user(second.token) is None
    assert accounts.user("made-up-token") is None and accounts.user(None) is None


def test_a_one_time_code_is_redeemed_for_a_session_once_and_soon(accounts, db):
    """What a sign-in hands the page for the cookie: no session, a code that opens one once,
    within a minute, stored only as its digest."""
    accounts.sign_up("alice", PASSWORD)
    grant = accounts.sign_in("alice", PASSWORD, one_time=True)
    assert grant.one_time and accounts.user(grant.token) is None, "the code is no session token"
    with db.connect() as conn:
        assert grant.token not in str(conn.execute(text("SELECT * FROM app_session_grants")).all())
    with ThreadPoolExecutor(8) as pool:  # however many requests bring it at once, it opens one session
        opened = [s for s in pool.map(lambda _: accounts.redeem(grant.token), range(8)) if s is not None]
    assert len(opened) == 1 and opened[0].username == "alice" and not opened[0].one_time
    assert accounts.user(opened[0].token) == "alice" and opened[0].token != grant.token
    assert accounts.redeem(grant.token) is None

    stale = accounts.sign_up("bob", PASSWORD, one_time=True)
    assert stale.one_time and accounts.user(stale.token) is None
    with db.begin() as conn:
        conn.execute(text("UPDATE app_session_grants SET expires_at = now() - interval '1 second'"))
    assert accounts.redeem(stale.token) is None
    assert accounts.redeem(None) is None and accounts.redeem("x" * 10_000) is None

    pending = accounts.sign_in("bob", PASSWORD, one_time=True)
    accounts.create_account("bob", "another good password", replace=True)  # a new password ends it too
    assert accounts.redeem(pending.token) is None


# ---------------------------------------------------------------------- the app's gates


def sign_up(app: AppTest, name: str) -> AppTest:
    app.text_input(key="sign_up_name").input(name)
    app.text_input(key="sign_up_password").input(PASSWORD)
    app.text_input(key="sign_up_again").input(PASSWORD)
    next(b for b in app.button if b.label == "Create the account").click().run()
    assert not app.exception, app.exception
    return app


def test_password_mode_signs_up_in_and_out(password_mode):
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not app.exception, app.exception
    assert [t.label for t in app.tabs] == ["Sign in", "Create an account"]
    assert "q" not in [w.key for w in app.text_input], "no search box before signing in"

    sign_up(app, "carol")
    assert "Signed in as **carol**" in texts(app.sidebar.caption)
    assert app.title[0].value == "Search your mail"

    next(b for b in app.sidebar.button if b.label == "Sign out").click().run()
    assert not app.exception
    assert app.session_state["auth_token"] is None
    assert "q" not in [w.key for w in app.text_input], "the search is gone with the session"
    assert "Sign in" in texts(app.warning) + " ".join(t.label for t in app.tabs)

    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    app.text_input(key="sign_in_name").input("carol")
    app.text_input(key="sign_in_password").input("not the password")
    next(b for b in app.button if b.label == "Sign in").click().run()
    assert "do not match" in texts(app.error)
    app.text_input(key="sign_in_password").input(PASSWORD)
    next(b for b in app.button if b.label == "Sign in").click().run()
    assert "Signed in as **carol**" in texts(app.sidebar.caption)


def test_served_with_the_cookie_routes_a_sign_in_hands_the_page_a_code_not_the_token(password_mode, db,
                                                                                      monkeypatch):
    """Served as asgi.py: the page gets a one-time code to trade for the cookie, the tab keeps
    no token, and no session exists until the code is redeemed."""
    import app_state
    import session_cookie

    monkeypatch.setenv("MAILSEARCH_SESSION_COOKIE_ROUTES", "1")
    assert session_cookie.mounted()
    Accounts(db).create_account("carol", PASSWORD)
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    app.text_input(key="sign_in_name").input("carol")
    app.text_input(key="sign_in_password").input(PASSWORD)
    next(b for b in app.button if b.label == "Sign in").click().run()
    assert not app.exception, app.exception
    assert "auth_token" not in app.session_state or not app.session_state["auth_token"]
    html = " ".join(e.value for e in app.html)
    assert "Signing you in" in html and session_cookie.SIGN_IN_PATH in html
    code = re.search(rf'"{session_cookie.CODE_HEADER}": "([^"]+)"', html).group(1)
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM app_sessions")).scalar() == 0
    session = app_state.accounts().redeem(code)
    assert session is not None and session.username == "carol" and session.token not in html


def test_admin_pages_are_for_admins(password_mode, db):
    accounts = Accounts(db)
    for page in (SETTINGS, SAVINGS, SEARCH):  # nobody signed in: a page run directly asks for a sign-in
        app = AppTest.from_file(page, default_timeout=TIMEOUT).run()
        assert "Sign in to see this page." in texts(app.warning)
        assert not app.title or app.title[0].value != "Image cache settings"

    user = accounts.sign_up("carol", PASSWORD)
    for page in (SETTINGS, SAVINGS):
        app = AppTest.from_file(page, default_timeout=TIMEOUT)
        app.session_state["auth_token"] = user.token
        app.run()
        assert "This page is for administrators." in texts(app.error)
        assert not app.dataframe and not app.metric, "nothing of the cache is shown"

    accounts.create_account("boss", PASSWORD)
    app = AppTest.from_file(SETTINGS, default_timeout=TIMEOUT)
    app.session_state["auth_token"] = accounts.sign_in("boss", PASSWORD).token
    app.run()
    assert not app.exception and app.title[0].value == "Image cache settings"


def test_only_admins_may_import_from_a_server_path(password_mode, db):
    accounts = Accounts(db)
    for name, expect in (("carol", False), ("boss", True)):
        app = AppTest.from_file(str(ROOT / "pages" / "import_mail.py"), default_timeout=TIMEOUT)
        accounts.create_account(name, PASSWORD)
        app.session_state["auth_token"] = accounts.sign_in(name, PASSWORD).token
        app.run()
        assert not app.exception
        labels = [t.label for t in app.tabs]
        assert ("🗂️ Path on the server" in labels) is expect, labels
        assert f"Messages are filed for **{name}**" in texts(app.caption)


def test_oidc_mode(app_env, monkeypatch):
    import app_state

    monkeypatch.setenv("AUTH_MODE", "oidc")
    monkeypatch.setenv("ADMIN_USERS", "boss@example.com")
    app = AppTest.from_file(APP, default_timeout=TIMEOUT)
    app.user = {"is_logged_in": False}
    app.run()
    assert "no [auth] section" in texts(app.error)

    app = AppTest.from_file(APP, default_timeout=TIMEOUT)
    app.user = {"is_logged_in": False}
    app.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
                           "client_id": "id", "client_secret": "secret",
                           "server_metadata_url": "https://login.example.com/.well-known/openid-configuration"}
    app.run()
    assert not app.exception and [b.label for b in app.button] == ["Sign in"]

    for email, admin in (("Dana@Example.com", False), ("boss@example.com", True)):
        app = AppTest.from_file(APP, default_timeout=TIMEOUT)
        app.user = {"is_logged_in": True, "email": email, "email_verified": True, "name": "Someone"}
        app.run()
        assert not app.exception, app.exception
        assert f"Signed in as **{app_state.md(email.casefold())}**" in texts(app.sidebar.caption)
        assert ("admin" in texts(app.sidebar.caption)) is admin

    app = AppTest.from_file(SETTINGS, default_timeout=TIMEOUT)
    app.user = {"is_logged_in": True, "email": "dana@example.com", "email_verified": "true"}
    app.run()
    assert "This page is for administrators." in texts(app.error)


@pytest.mark.parametrize("verified, signed_in", [
    (True, True), ("true", True), ("True", True), (None, False), (False, False), ("false", False),
    ("yes", False), (1, False), ("", False)])
def test_oidc_needs_a_verified_address(verified, signed_in):
    info = {"is_logged_in": True, "email": "Boss@Example.com"}
    if verified is not None:
        info["email_verified"] = verified
    user = auth.oidc_user(info, frozenset({"boss@example.com"}))
    assert (user == auth.User("boss@example.com", is_admin=True)) if signed_in else user is None


def test_oidc_mode_refuses_an_unverified_address(app_env, monkeypatch):
    monkeypatch.setenv("AUTH_MODE", "oidc")
    monkeypatch.setenv("ADMIN_USERS", "boss@example.com")
    app = AppTest.from_file(APP, default_timeout=TIMEOUT)
    app.user = {"is_logged_in": True, "email": "boss@example.com", "name": "Not the boss"}  # no email_verified
    app.run()
    assert not app.exception, app.exception
    refused = texts(app.error)
    assert "Your identity provider has not confirmed that" in refused and "is your address" in refused
    assert not app.sidebar.caption and "q" not in [w.key for w in app.text_input]
    app = AppTest.from_file(SETTINGS, default_timeout=TIMEOUT)
    app.user = {"is_logged_in": True, "email": "boss@example.com", "email_verified": False}
    app.run()
    assert "Sign in to see this page." in texts(app.warning)


# ---------------------------------------------------------------------- one user's mail is theirs


@pytest.fixture
def two_mailboxes(db, local_embedder):
    import_messages(db, "alice", raw(list(LABELLED.values())), embedder=local_embedder)
    import_messages(db, "bob", raw([mail("Bob's secret dog", "Only Bob may read about his dog, Rex.",
                                         sender="bob@example.com")]), embedder=local_embedder)
    with db.connect() as conn:
        ids = dict(conn.execute(text("SELECT owner, max(id) FROM mail_messages GROUP BY owner")).all())
        bobs_thread = conn.execute(text("SELECT thread_id FROM mail_messages WHERE owner = 'bob'")).scalar()
    return ids, bobs_thread


@pytest.mark.parametrize("query", ["dog", "Rex", "from:bob", "from:bob@example.com", "subject:secret",
                                   "\"Bob's secret dog\"", "dog OR Rex", "owner:bob dog", "-nothing dog",
                                   "' OR owner = 'bob", "dog'; SELECT * FROM mail_messages; --"])
def test_search_syntax_never_reaches_another_users_mail(db, local_embedder, two_mailboxes, query):
    results = search(db, "alice", query, embedder=local_embedder, limit=50)
    assert all("Bob" not in hit.subject and "Rex" not in (hit.snippet or "") for hit in results.hits), query


def test_message_ids_and_threads_are_scoped(db, two_mailboxes):
    ids, bobs_thread = two_mailboxes
    assert message(db, "bob", ids["bob"]) is not None
    assert message(db, "alice", ids["bob"]) is None
    assert thread(db, "alice", bobs_thread) == []


def test_widget_state_cannot_open_another_users_message(app_env, monkeypatch, two_mailboxes):
    ids, _ = two_mailboxes
    monkeypatch.setenv("DEFAULT_OWNER", "alice")
    app = AppTest.from_file(SEARCH, default_timeout=TIMEOUT).run()
    picture_shown(app.text_input(key="q").input("dog").run())
    app.query_params["open"] = str(ids["bob"])  # as if a crafted link named Bob's message
    app.run()
    assert not app.exception
    shown = texts(app.markdown) + texts(app.caption) + texts(app.text) + texts(app.html)
    assert "Rex" not in shown and "Bob's secret dog" not in shown
    assert texts(app.warning) == "That message is not in your mailbox."


def test_end_users_never_see_other_users_topics(password_mode, db, two_mailboxes):
    accounts = Accounts(db)
    tokens = {name: accounts.sign_up(name, PASSWORD).token for name in ("alice", "bob")}
    app = AppTest.from_file(SEARCH, default_timeout=TIMEOUT)
    app.session_state["auth_token"] = tokens["bob"]
    app.run()
    picture_shown(app.text_input(key="q").input("puppy").run())
    assert "Generated ($0.04)" in texts(app.caption)

    app = AppTest.from_file(SEARCH, default_timeout=TIMEOUT)
    app.session_state["auth_token"] = tokens["alice"]
    app.run()
    picture_shown(app.text_input(key="q").input("dog").run())  # served bob's picture from the shared cache
    captions = texts(app.caption)
    assert "From the picture cache (saved $0.04)" in captions
    assert "puppy" not in captions.casefold(), "bob's topic is bob's business"


# ---------------------------------------------------------------------- the cost guard


@pytest.fixture
def guarded(db, local_embedder, emoji_generator, tmp_path):
    def make(**limits) -> SemanticCache:
        return SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(tmp_path / "blobs"),
                             guard=CostGuard(db, **limits))
    return make


def test_a_user_over_the_daily_limit_is_still_served_hits(guarded):
    cache = guarded(images_per_user=2)
    assert cache.get("dog", user="alice").kind == "generated"
    assert cache.get("house", user="alice").kind == "generated"
    with pytest.raises(BudgetExceeded, match="daily limit of 2 new pictures is reached"):
        cache.get("rocket", user="alice")
    assert cache.get("dog", user="alice").kind == "exact"
    assert cache.get("puppy", user="alice").kind == "semantic"
    assert cache.get("rocket", user="bob").kind == "generated", "the limit is per user"
    assert CacheAdmin(cache).entry("rocket") is not None
    usage = cache.guard.usage("alice")
    assert (usage.images, usage.user_images, usage.spent_usd) == (3, 2, pytest.approx(0.12))


def test_the_daily_budget_holds_for_everyone(guarded, db):
    cache = guarded(budget_usd=0.08)
    cache.get("dog", user="alice")
    cache.get("house", user="bob")
    with pytest.raises(BudgetExceeded, match=r"budget for new pictures \(\$0\.08\) is used up"):
        cache.get("rocket", user="carol")
    assert cache.get("house", user="carol").kind == "exact"  # hits cost nothing and are always allowed
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM semcache_entries WHERE key = 'rocket'")).scalar() == 0
        assert conn.execute(text("SELECT error FROM semcache_events WHERE kind = 'error'")).scalar().startswith(
            "BudgetExceeded")


def test_limits_are_set_live_for_every_process(guarded, db):
    cache = guarded(images_per_user=0)
    with pytest.raises(BudgetExceeded):
        cache.get("dog", user="alice")
    other = CostGuard(db, images_per_user=0)  # another process, built with the same settings
    other.set_limits(images_per_user=5, budget_usd=None, actor="test")
    assert cache.guard.limits().images_per_user == 5 and cache.guard.limits().budget_usd is None
    assert cache.get("dog", user="alice").kind == "generated"
    with pytest.raises(ValueError):
        other.set_limits(images_per_user=-1, budget_usd=None)


def test_a_failed_generation_gives_its_reservation_back(db, local_embedder, tmp_path):
    class Broken:
        name, price_usd = "broken", 0.04

        def generate(self, topic, embedding=None):
            raise GenerationError("The image service is down.")

    cache = SemanticCache(db, local_embedder, Broken(), LocalBlobStore(tmp_path), guard=CostGuard(db, images_per_user=1))
    for _ in range(3):
        with pytest.raises(GenerationError):
            cache.get("dog", user="alice")
    usage = cache.guard.usage("alice")
    assert (usage.images, usage.user_images, usage.spent_usd) == (0, 0, 0.0)


def test_concurrent_misses_never_overshoot_the_limit(guarded, db):
    cache = guarded(images_per_user=3, budget_usd=1.0)
    topics = ["dog", "rocket", "pizza", "guitar", "volcano", "bicycle", "umbrella", "castle"]
    barrier = threading.Barrier(len(topics))

    def one(topic):
        barrier.wait()
        try:
            return cache.get(topic, user="alice", threshold=0.0).kind
        except BudgetExceeded:
            return "refused"

    with ThreadPoolExecutor(len(topics)) as pool:
        kinds = list(pool.map(one, topics))
    assert kinds.count("generated") == 3 and kinds.count("refused") == 5
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM semcache_entries")).scalar() == 3


def test_the_search_page_says_so_and_keeps_the_results(app_env, monkeypatch, db, local_embedder):
    monkeypatch.setenv("DEFAULT_OWNER", "alice")
    monkeypatch.setenv("DAILY_IMAGES_PER_USER", "0")
    import_messages(db, "alice", raw(list(LABELLED.values())), embedder=local_embedder)
    app = AppTest.from_file(SEARCH, default_timeout=TIMEOUT).run()
    picture_shown(app.text_input(key="q").input("dog").run())
    assert not app.exception
    assert "No new picture: Your daily limit of 0 new pictures is reached." in texts(app.caption)
    assert "Dog walking rota" in texts(app.markdown), "the results are still there"
