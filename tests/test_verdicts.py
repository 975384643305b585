"""What verdicts do: each entry's own threshold learned from "wrong match" / "good match" (tighter
after a wrong serve, looser only under the error bound), and a ban that takes effect at once,
for every entry showing the same picture, on the Search page and on the Settings page."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from streamlit.testing.v1 import AppTest

from conftest import picture_shown
from helpers import LABELLED, captions, raw
from mail.store import import_messages
from semcache import CacheAdmin, InvalidThreshold, SemanticCache
from semcache.blobstores import LocalBlobStore
from semcache.matching import DEFAULT_THRESHOLD, ENTRY_LOOSEN_CAP, EntryEvidence, check_error_bound, entry_threshold
from semcache.schema import upgrade

ROOT = Path(__file__).resolve().parent.parent
SEARCH_PAGE = str(ROOT / "pages" / "search.py")
SETTINGS_PAGE = str(ROOT / "pages" / "cache_settings.py")


# ---------------------------------------------------------------------------- the rule, alone

def test_an_entry_without_verdicts_keeps_the_threshold():
    assert entry_threshold(0.35, EntryEvidence(), 0.05) == 0.35
    assert entry_threshold(0.0, EntryEvidence(0, 3, None, 0.1), 0.05) == 0.0, "0 stays exact-only"


def test_a_wrong_serve_tightens_strictly_below_its_score():
    own = entry_threshold(0.35, EntryEvidence(0, 1, None, 0.30), 0.05)
    assert own < 0.30 and own == pytest.approx(0.30)
    assert entry_threshold(0.35, EntryEvidence(0, 1, None, 0.50), 0.05) == 0.35, "a wrong serve beyond changes nothing"
    assert entry_threshold(0.35, EntryEvidence(5, 1, 0.20, 0.35), 0.05) < 0.35


def test_good_serves_loosen_only_under_the_error_bound_and_the_cap():
    # 0 wrong of 15: the Wilson interval reaches 0.204; of 16: 0.194.
    assert entry_threshold(0.35, EntryEvidence(15, 0, 0.40, None), 0.2) == 0.35
    assert entry_threshold(0.35, EntryEvidence(16, 0, 0.40, None), 0.2) == 0.40
    assert entry_threshold(0.35, EntryEvidence(16, 0, 0.40, None), 0.05) == 0.35, "not enough for 5%"
    assert entry_threshold(0.35, EntryEvidence(16, 1, 0.40, 0.60), 0.2) == 0.35, "1 wrong of 17 reaches 0.27"
    assert entry_threshold(0.35, EntryEvidence(500, 0, 0.90, None), 0.05) == pytest.approx(0.35 + ENTRY_LOOSEN_CAP)
    assert entry_threshold(0.35, EntryEvidence(500, 0, 0.30, None), 0.05) == 0.35, "never tighter from good ones"


def test_the_error_bound_is_a_share():
    assert check_error_bound(0.05) == 0.05
    for bad in (-0.1, 1.5, math.nan, "0.1", True):
        with pytest.raises(InvalidThreshold):
            check_error_bound(bad)


# ---------------------------------------------------------------------------- the cache

@pytest.fixture
def blobs(tmp_path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def cache(db, local_embedder, emoji_generator, blobs) -> SemanticCache:
    """Distances alone (no WordNet), so the scores below are the model's distances."""
    return SemanticCache(db, local_embedder, emoji_generator, blobs, default_threshold=0.35, entry_thresholds=True)


def test_a_wrong_serve_tightens_the_entry_for_every_topic(cache, db, local_embedder, emoji_generator, blobs):
    cache.get("dog")
    cat = cache.get("cat")  # 0.34 from dog: served within 0.35, and wrong
    assert (cat.kind, cat.served_key) == ("semantic", "dog")
    CacheAdmin(cache).mark_wrong("cat", "dog", actor="owner")  # no distance given: read from the vectors

    assert cache.get("doggy").served_key == "dog", "nearer than the wrong serve (0.28): still served"
    hound = {n.key: n for n in cache.neighbours("hound")}["dog"]  # 0.35 from dog, within 0.35
    assert not hound.would_serve and hound.threshold < cat.distance
    assert cache.get("hound").kind == "generated"

    entry = CacheAdmin(cache).entry("dog")
    assert (entry.serves_right, entry.serves_wrong) == (0, 1)
    assert entry.wrong_score == pytest.approx(cat.distance, abs=1e-6)
    assert entry.own_threshold < cat.distance

    today = SemanticCache(db, local_embedder, emoji_generator, blobs, default_threshold=0.35)
    assert {n.key: n for n in today.neighbours("hound")}["dog"].threshold == 0.35, "switched off: as before"
    assert CacheAdmin(today).entry("dog").own_threshold is None


def test_good_serves_loosen_the_entry_under_the_error_bound(cache, db, local_embedder, emoji_generator, blobs):
    cache.get("house")
    admin = CacheAdmin(cache)
    cache.set_entry_error_bound(0.2, actor="owner")
    near = lambda: {n.key: n for n in cache.neighbours("apartment")}["house"]  # noqa: E731 (0.37 away)
    assert not near().would_serve and near().threshold == 0.35
    admin.mark_right("apartment", "house")
    for i in range(14):
        admin.mark_right(f"home {i}", "house", distance=0.2)
    assert not near().would_serve, "15 good serves: not yet enough evidence for a 20% bound"
    admin.mark_right("home 14", "house", distance=0.2)
    assert near().would_serve and near().threshold == pytest.approx(near().distance, abs=1e-6)
    assert admin.entry("house").serves_right == 16

    today = SemanticCache(db, local_embedder, emoji_generator, blobs, default_threshold=0.35)
    assert not {n.key: n for n in today.neighbours("apartment")}["house"].would_serve, "switched off: as before"

    cache.set_entry_error_bound(0.05)
    assert not near().would_serve, "a stricter bound takes the loosening back"
    cache.set_entry_error_bound(0.2)
    admin.mark_wrong("building", "house", distance=0.49)
    assert not near().would_serve, "1 wrong of 17: its share may be too high"
    result = cache.get("apartment")
    assert result.kind == "generated"


def test_a_ban_keeps_every_entry_with_the_same_picture_away(cache):
    dog = cache.get("dog")
    doggy = cache.get("doggy", threshold=0.0)  # its own picture: the very same dog
    assert doggy.kind == "generated" and doggy.blob_key == dog.blob_key
    served = cache.get("kitten", threshold=0.6)
    assert served.kind == "semantic" and served.blob_key == dog.blob_key
    CacheAdmin(cache).mark_wrong("kitten", served.served_key, distance=served.distance)

    again = cache.get("kitten", threshold=0.6)
    assert again.blob_key != dog.blob_key, f"served {again.served_key}: the same dog again"
    preview = {n.key: n for n in cache.neighbours("kitten", threshold=0.6)}
    assert preview["dog"].banned and preview["doggy"].banned
    assert cache.banned(served) and not cache.banned(again)
    assert cache.get("puppy", threshold=0.6).served_key in {"dog", "doggy"}, "only for that topic"


def test_old_verdicts_are_counted_by_the_migration(pg_url):
    import uuid

    name = f"verdicts_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(make_url(pg_url).set(database=name))
    try:
        upgrade(engine, to=5)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO semcache_entries (key, canon, phrase, blob_key, size_bytes, generator, "
                              "cost_usd) VALUES ('dog', 'dog', 'dog', :b, 1, 'x', 0)"), {"b": "a" * 64 + ".png"})
            conn.execute(text("INSERT INTO semcache_feedback (query_key, entry_key, verdict, distance) VALUES "
                              "('cat', 'dog', 'wrong', 0.34), ('puppy', 'dog', 'right', 0.2), "
                              "('doggy', 'dog', 'right', 0.28), ('wolf', 'dog', 'right', 0.5)"))
        assert upgrade(engine) == [6]
        with engine.connect() as conn:
            row = conn.execute(text("SELECT serves_right, serves_wrong, right_score, wrong_score "
                                    "FROM semcache_entries")).one()
            hashes = set(conn.execute(text("SELECT blob_hash FROM semcache_feedback")).scalars())
        assert tuple(row) == (3, 1, 0.28, 0.34), "the largest good score below the smallest wrong one"
        assert hashes == {"a" * 64}
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


# ---------------------------------------------------------------------------- the pages

@pytest.fixture
def alice(app_env, monkeypatch):
    monkeypatch.setenv("DEFAULT_OWNER", "alice")
    return app_env


def test_a_ban_takes_effect_at_once_on_the_search_page(alice, db, local_embedder, emoji_generator):
    import_messages(db, "alice", raw(list(LABELLED.values())), embedder=local_embedder)
    cache = SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(alice / "blobs"))
    cache.get("dog")
    app = AppTest.from_file(SEARCH_PAGE, default_timeout=180).run()
    app.text_input(key="q").input("puppy").run()
    assert "Served from cache: *dog*" in captions(picture_shown(app))

    CacheAdmin(cache).mark_wrong("puppy", "dog", actor="settings page")  # as the Settings page does
    app.run()  # the same search, in the same session: opening a message, a page that runs again
    assert "Served from cache: *dog*" not in captions(picture_shown(app))
    assert "Generated ($0.04)" in captions(app), "a new lookup's answer"
    app.run()
    assert "Exact cache hit" not in captions(app) and "Generated ($0.04)" in captions(app), "asked once, kept"


def test_the_ban_list_keeps_its_choice_and_the_preview_follows(app_env, db, local_embedder, emoji_generator):
    cache = SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(app_env / "blobs"),
                          default_threshold=0.35)
    cache.get("dog")
    cache.get("house")
    cache.get("puppy")
    cache.get("mansion")
    app = AppTest.from_file(SETTINGS_PAGE, default_timeout=120).run()
    choice = app.selectbox(key="wrong_choice")
    assert choice.value is None, "nothing is chosen for the user"
    labels = list(choice.options)
    assert len(labels) == 2 and "“mansion” was served “house”" in labels[0], labels
    choice.select(("puppy", "dog")).run()  # chosen by the pair, not by its place in the list
    ban = lambda: next(b for b in app.button if b.label == "Never serve this again")  # noqa: E731
    assert not ban().disabled
    ban().click().run()
    assert not app.exception, app.exception
    assert "will never again be served" in "\n".join(s.value for s in app.success)
    choice = app.selectbox(key="wrong_choice")
    assert choice.value is None, "after the ban the list does not jump to another pair"
    assert list(choice.options) == [labels[0]], "the banned pair left the list"
    assert ban().disabled, "nothing chosen, nothing to ban"

    app.text_input(key="preview_topic").input("puppy").run()
    assert "would be served the picture of “dog”" not in "\n".join(s.value for s in app.success)
    entries = app.dataframe[1].value.set_index("Phrase")
    assert entries.loc["dog", "Wrong"] == 1 and entries.loc["dog", "Good"] == 0
    assert entries.loc["dog", "Own threshold"] < DEFAULT_THRESHOLD
    assert entries.loc["house", "Own threshold"] == pytest.approx(DEFAULT_THRESHOLD)
