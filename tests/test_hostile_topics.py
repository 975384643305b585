"""Topics nobody should type, and some that everybody does: at the library (`SemanticCache.get`
works or raises `InvalidTopic` with a sentence) and on the Search page (a picture or a note
saying why not, never an exception), against the real database, model and offline generator."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from mail.store import import_messages
from semcache import InvalidTopic, SemanticCache
from semcache.blobstores import LocalBlobStore
from helpers import mail, raw
from conftest import picture_shown

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "search.py")
SQL = "'; DROP TABLE semcache_entries; --"


def count(engine, sql: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


@pytest.fixture
def cache(db, local_embedder, emoji_generator, tmp_path) -> SemanticCache:
    return SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(tmp_path / "blobs"),
                         default_threshold=0.35, max_topic_chars=200)


@pytest.mark.parametrize("topic, key", [
    (SQL, SQL.casefold()),
    ("电子邮件 发票", "电子邮件 发票"),                      # Chinese
    ("البريد الإلكتروني", "البريد الإلكتروني"),              # Arabic
    ("ईमेल संदेश", "ईमेल संदेश"),                            # Hindi
    ("🐶", "🐶"),
    ("👨‍👩‍👧 family", "👨‍👩‍👧 family"),                      # zero-width joiners belong to the emoji
    ("DOG\x00\x07\x1b[31m  house\r\n", "dog [31m house"),  # control characters are spaces
    ("\ud800 dog \udcff", "dog"),                           # lone surrogates (no database takes them)
    ("x" * 200, "x" * 200),                                 # exactly the limit
])
def test_topics_that_work(cache, topic, key):
    result = cache.get(topic)
    assert result.kind == "generated" and result.key == key
    assert result.image.startswith(b"\x89PNG")
    assert cache.get(topic).kind == "exact"
    assert count(cache.engine, "SELECT count(*) FROM semcache_entries") == 1  # the table is still there


@pytest.mark.parametrize("topic, says", [
    ("", "The topic is empty"),
    ("  \t\n ", "The topic is empty"),
    ("\x00\x01\x1f\x7f", "The topic is empty"),
    ("\u200b\ufeff\u2060", "The topic is empty"),          # only invisible characters
    ("x" * 201, "That topic is 201 characters long; use at most 200."),
    ("x" * 10_000, "That topic is 10,000 characters long; use at most 200."),
    ("狗" * 10_000, "That topic is 10,000 characters long; use at most 200."),
    (b"dog", "A topic must be text, not bytes."),
    (None, "A topic must be text, not NoneType."),
])
def test_topics_refused_with_a_sentence(cache, topic, says):
    with pytest.raises(InvalidTopic) as refused:
        cache.get(topic)
    message = str(refused.value)
    assert says in message and message.endswith(".") and len(message) < 200
    assert count(cache.engine, "SELECT count(*) FROM semcache_entries") == 0


# ---------------------------------------------------------------------------- the Search page

PICTURE_CAPTIONS = ("Generated ($0.04)", "Exact cache hit", "Served from cache")


@pytest.fixture
def page(app_env, db, local_embedder, monkeypatch) -> AppTest:
    """The Search page for an owner with a little mail, with topics limited to 40 characters."""
    monkeypatch.setenv("DEFAULT_OWNER", "topics")
    monkeypatch.setenv("MAX_TOPIC_CHARS", "40")
    import_messages(db, "topics", raw([mail("Dog walking rota", "Who walks the dog on Tuesday?"),
                                       mail("Invoice 2291", "Please find the invoice for March.")]),
                    embedder=local_embedder)
    app = AppTest.from_file(PAGE, default_timeout=180).run()
    assert not app.exception, app.exception
    return app


def search(app: AppTest, query: str) -> tuple[str, int]:
    """Type ``query``; the captions shown and how many pictures."""
    picture_shown(app.text_input(key="q").input(query).run())
    assert not app.exception, (query, app.exception)
    assert not app.error, (query, [e.value for e in app.error])
    return "\n".join(c.value for c in app.caption), len(app.image)


@pytest.mark.parametrize("query", [SQL, "电子邮件", "مرحبا بالعالم", "नमस्ते दुनिया", "🐶 🎉",
                                   "dog\x07\x1b[31m", "!!!", "OR"])
def test_page_draws_odd_topics(page, db, query):
    captions, pictures = search(page, query)
    assert pictures == 1 and any(c in captions for c in PICTURE_CAPTIONS), captions
    assert count(db, "SELECT count(*) FROM semcache_entries") == 1


def test_page_honours_the_topic_length_setting(page, db):
    captions, pictures = search(page, "walking the dog on a long tuesday morning")  # 41 characters
    assert pictures == 0
    assert "No picture this time: That topic is 41 characters long; use at most 40." in captions
    assert "Dog walking rota" in "\n".join(m.value for m in page.markdown), "the results still show"

    captions, pictures = search(page, "walking the dog on a long tuesday mornin")  # 40 characters
    assert pictures == 1 and "Generated ($0.04)" in captions

    captions, pictures = search(page, "x" * 10_000)
    assert pictures == 0 and "use at most 40." in captions

    captions, pictures = search(page, "word " * 3_000)
    assert pictures == 0 and "use at most 40." in captions
    assert count(db, "SELECT count(*) FROM semcache_entries") == 1


@pytest.mark.parametrize("query, says", [
    ("", "Type a topic to search them."),
    ("from:alex", "2 messages · from alex"),  # only a filter: no topic, no picture asked for
    ("\u200b\u2060", "No picture this time: The topic is empty"),
])
def test_page_without_a_topic_says_so(page, db, query, says):
    captions, pictures = search(page, query)
    assert pictures == 0 and says in captions, captions
    assert count(db, "SELECT count(*) FROM semcache_entries") == 0
