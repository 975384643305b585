"""Accounts and isolation (AUTH_MODE none / password / oidc, admins, one user's mail kept from
another) and the cost guard (a daily limit per user and a daily budget for everyone). Real
parts: the embedded PostgreSQL, the local model, the offline pictures, Streamlit's AppTest."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from db.accounts import LOCK_AFTER, AccountError, Accounts
from mail.search import message, search, thread
from mail.store import import_messages
from semcache import BudgetExceeded, GenerationError, SemanticCache
from semcache.blobstores import LocalBlobStore
from semcache.budget import CostGuard
from test_mail import LABELLED, mail, raw
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


def test_sessions_expire_and_sign_out_ends_them(accounts, db):
    first = accounts.sign_up("alice", PASSWORD)
    second = accounts.sign_in("alice", PASSWORD)
    accounts.sign_out(first.token)
    assert accounts.user(first.token) is None and accounts.user(second.token) == "alice"
    with db.begin() as conn:
        conn.execute(text("UPDATE app_sessions SET expires_at = now() - interval '1 second'"))
    assert accounts.user(second.token) is None
    assert accounts.user("made-up-token") is None and accounts.user(None) is None


# ---------------------------------------------------------------------- the app's gates


@pytest.fixture
def password_mode(app_env, monkeypatch):
    import app_state

    monkeypatch.setenv("AUTH_MODE", "password")
    monkeypatch.setenv("ADMIN_USERS", "boss")
    app_state.accounts.clear()
    yield app_env
    app_state.accounts.clear()


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

    boss = accounts.sign_up("boss", PASSWORD)
    app = AppTest.from_file(SETTINGS, default_timeout=TIMEOUT)
    app.session_state["auth_token"] = boss.token
    app.run()
    assert not app.exception and app.title[0].value == "Image cache settings"


def test_only_admins_may_import_from_a_server_path(password_mode, db):
    accounts = Accounts(db)
    for name, expect in (("carol", False), ("boss", True)):
        app = AppTest.from_file(str(ROOT / "pages" / "import_mail.py"), default_timeout=TIMEOUT)
        app.session_state["auth_token"] = accounts.sign_up(name, PASSWORD).token
        app.run()
        assert not app.exception
        labels = [t.label for t in app.tabs]
        assert ("🗂️ Path on the server" in labels) is expect, labels
        assert f"Messages are filed for **{name}**" in texts(app.caption)


def test_oidc_mode(app_env, monkeypatch):
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
        app.user = {"is_logged_in": True, "email": email, "name": "Someone"}
        app.run()
        assert not app.exception, app.exception
        assert f"Signed in as **{email.casefold()}**" in texts(app.sidebar.caption)
        assert ("admin" in texts(app.sidebar.caption)) is admin

    app = AppTest.from_file(SETTINGS, default_timeout=TIMEOUT)
    app.user = {"is_logged_in": True, "email": "dana@example.com"}
    app.run()
    assert "This page is for administrators." in texts(app.error)


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
    app.session_state["open"] = ids["bob"]  # as if a crafted request named Bob's message
    app.run()
    assert not app.exception
    shown = texts(app.markdown) + texts(app.caption) + texts(app.text)
    assert "Rex" not in shown and "Bob's secret dog" not in shown


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
    assert cache.entry("rocket") is not None
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
