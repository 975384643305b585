"""Shared fixtures: a fresh embedded PostgreSQL + pgvector for the session, migrated with the
app's migrations, and clean cache tables for every test that asks for them.

Under CI (CI=true) a missing component fails the run; elsewhere it may skip with the reason.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

IN_CI = os.environ.get("CI", "").lower() == "true"


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
                "semcache_spaces", "semcache_settings", "semcache_usage")
MAIL_TABLES = ("mail_embeddings", "mail_messages", "mail_imap_state")
ACCOUNT_TABLES = ("app_sessions", "app_users")


@pytest.fixture
def db(engine):
    """The engine, with every table emptied (and the cache's per-space indexes dropped)."""
    with engine.begin() as conn:
        for name in conn.execute(text("SELECT indexname FROM pg_indexes "
                                      "WHERE indexname LIKE 'semcache_embeddings_hnsw_space_%'")).scalars():
            conn.execute(text(f'DROP INDEX "{name}"'))
        conn.execute(text(f"TRUNCATE {', '.join(CACHE_TABLES + MAIL_TABLES + ACCOUNT_TABLES)} RESTART IDENTITY CASCADE"))
    return engine


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 5 and IN_CI:  # no tests ran: CI must not pass on nothing
        session.exitstatus = 1


from fake_openai import fake_openai  # noqa: E402,F401  (fixture)
from s3server import s3_server  # noqa: E402,F401  (session fixture)


@pytest.fixture(scope="session")
def local_embedder():
    """The real local model (all-MiniLM-L6-v2 from its wheel), loaded once for the session."""
    from semcache.embedders import LocalEmbedder

    embedder = LocalEmbedder()
    embedder.embed(["warm up"])
    return embedder


@pytest.fixture(scope="session")
def emoji_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("emoji-index")


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

    reset()
    yield tmp_path
    reset()
