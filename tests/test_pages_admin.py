"""The Settings and Savings pages (Streamlit's AppTest against the test database, the real local
model and the real emoji generator), and the figures of `semcache.report` on known events."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

import demo_topics
from app_text import explain
from semcache import CacheAdmin, SemanticCache, report
from semcache.blobstores import LocalBlobStore
from semcache.matching import DEFAULT_THRESHOLD

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_PAGE = str(ROOT / "pages" / "cache_settings.py")
SAVINGS_PAGE = str(ROOT / "pages" / "savings.py")
TIMEOUT = 120


@pytest.fixture
def cache(app_env, db, local_embedder, emoji_generator) -> SemanticCache:
    """A cache on the same database and picture folder as the app's, to make lookups with."""
    return SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(app_env / "blobs"),
                         default_threshold=0.35)


def page(path: str) -> AppTest:
    app = AppTest.from_file(path, default_timeout=TIMEOUT).run()
    assert not app.exception, app.exception
    return app


def texts(elements) -> str:
    return "\n".join(str(element.value) for element in elements)


def metric(app: AppTest, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def count(value: str) -> int:
    return int(value.replace(",", ""))


def event_counts(db) -> dict:
    with db.connect() as conn:
        return dict(conn.execute(text("""
            SELECT count(*) AS lookups,
                   count(*) FILTER (WHERE kind = 'exact') AS exact,
                   count(*) FILTER (WHERE kind = 'semantic') AS semantic,
                   count(*) FILTER (WHERE kind = 'generated') AS generated,
                   count(*) FILTER (WHERE kind = 'error') AS errors,
                   COALESCE(sum(cost_spent_usd), 0) AS spent, COALESCE(sum(cost_saved_usd), 0) AS saved
            FROM semcache_events""")).one()._mapping)


# ---------------------------------------------------------------------- the settings page


def test_settings_page_on_an_empty_cache(app_env, db):
    app = page(SETTINGS_PAGE)
    assert app.slider(key="threshold").value == pytest.approx(DEFAULT_THRESHOLD)
    assert metric(app, "In use for every search") == f"{DEFAULT_THRESHOLD:.2f}"
    assert "No lookups yet" in texts(app.info)
    assert "Nothing is cached yet" in texts(app.info)
    setup = texts(app.markdown)
    assert "all-MiniLM-L6-v2" in setup and "384 dimensions" in setup and "$0.04" in setup
    assert "local folder" in setup
    with db.connect() as conn:  # showing the page stores nothing
        assert conn.execute(text("SELECT count(*) FROM semcache_settings")).scalar() == 0


def test_the_threshold_slider_is_stored_for_every_process(app_env, db, local_embedder, emoji_generator):
    app = page(SETTINGS_PAGE)
    app.slider(key="threshold").set_value(0.27).run()
    assert not app.exception
    assert "every user" in texts(app.success)
    fresh = SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(app_env / "blobs"))
    assert fresh.threshold == pytest.approx(0.27)
    with db.connect() as conn:
        stamp = conn.execute(text("SELECT threshold_set_at AS updated_at, threshold_set_by AS updated_by "
                                  "FROM semcache_spaces")).one()
    assert stamp.updated_by == "settings page"

    app.run()  # a rerun without a change writes nothing
    with db.connect() as conn:
        assert conn.execute(text("SELECT threshold_set_at FROM semcache_spaces")).scalar() == stamp.updated_at
    assert metric(app, "In use for every search") == "0.27"

    fresh.set_threshold(0.42, actor="cli")  # changed elsewhere: the page follows on its next run
    app.run()
    assert app.slider(key="threshold").value == pytest.approx(0.42)


def test_the_preview_shows_neighbours_and_which_would_be_served(app_env, cache):
    cache.get("dog")
    cache.get("invoices")
    app = page(SETTINGS_PAGE)
    app.text_input(key="preview_topic").input("puppy").run()
    assert not app.exception
    assert "would be served the picture of “dog”" in texts(app.success)
    shown = texts(app.markdown)
    assert "**dog**" in shown and "**invoices**" in shown
    assert "Served" in shown and "Too far" in shown
    assert len(app.image) == 2

    app.slider(key="threshold").set_value(0.0).run()  # exact matches only
    assert "would get a new picture" in texts(app.info)
    assert "green-badge" not in texts(app.markdown)

    app.text_input(key="preview_topic").input("Dog").run()
    assert "is cached itself" in texts(app.success)


def test_pages_render_after_lookups(app_env, cache):
    for topic in ["dog", "puppy", "dog", "house", "villa", "trip to Paris"]:
        cache.get(topic)
    settings = page(SETTINGS_PAGE)
    lookups = settings.dataframe[0].value
    assert list(lookups["Query"])[:2] == ["trip to Paris", "villa"]
    entries = settings.dataframe[1].value
    assert set(entries["Phrase"]) >= {"dog", "house", "trip to Paris"}
    assert all(url.startswith("data:image/png;base64,") for url in entries["Picture"])
    assert entries.set_index("Phrase").loc["dog", "Times served"] >= 2
    savings = page(SAVINGS_PAGE)
    assert count(metric(savings, "Lookups")) == 6
    assert not savings.exception


def test_a_wrong_match_is_never_served_again(app_env, cache):
    cache.get("dog")
    assert cache.get("puppy").kind == "semantic"
    app = page(SETTINGS_PAGE)
    choice = app.selectbox(key="wrong_choice")
    assert "“puppy” was served “dog”" in choice.options[0]
    choice.select(("puppy", "dog")).run()
    next(b for b in app.button if b.label == "Never serve this again").click().run()
    assert not app.exception
    assert "will never again be served" in texts(app.success)
    assert cache.get("puppy").kind == "generated"
    app.run()
    assert "No close-phrase matches to judge yet." in texts(app.caption)


def test_deleting_cached_pictures(app_env, cache):
    cache.get("dog")
    cache.get("pizza")
    app = page(SETTINGS_PAGE)
    app.multiselect(key="delete_choice").select("dog").run()
    next(b for b in app.button if b.label == "Delete").click().run()
    assert not app.exception
    assert "Deleted 1 cached picture." in texts(app.success)
    assert CacheAdmin(cache).entry("dog") is None and CacheAdmin(cache).entry("pizza") is not None
    assert list(app.dataframe[1].value["Phrase"]) == ["pizza"]


def test_regenerating_a_picture_asks_first_and_replaces_it(app_env, db, cache):
    cache.get("dog")
    admin = CacheAdmin(cache)
    old = admin.entry("dog")
    app = page(SETTINGS_PAGE)
    assert next(b for b in app.button if b.label == "Regenerate…").disabled
    app.selectbox(key="regenerate_choice").select("dog").run()
    next(b for b in app.button if b.label == "Regenerate…").click().run()
    assert "Make a new picture for “dog”? It costs one generation (\\$0.04)" in texts(app.warning)
    assert admin.entry("dog").blob_key == old.blob_key, "nothing is made before the confirmation"
    app.button(key="regenerate_cancel").click().run()
    assert not app.warning and admin.entry("dog").blob_key == old.blob_key

    next(b for b in app.button if b.label == "Regenerate…").click().run()
    app.button(key="regenerate_confirm").click().run()
    assert not app.exception
    assert "New picture for “dog” (\\$0.04): emoji " in texts(app.success)
    new = admin.entry("dog")
    assert new.blob_key != old.blob_key and new.detail != old.detail
    assert list(app.dataframe[1].value["Made from"]) == [new.detail]
    assert event_counts(db)["generated"] == 2
    savings = page(SAVINGS_PAGE)
    assert metric(savings, "Spent") == "$0.08" and count(metric(savings, "Generations")) == 2


def test_unreadable_pictures_are_reported_not_raised(app_env, cache):
    import streamlit as st

    cache.get("dog")
    st.cache_data.clear()  # the page keeps pictures it has read (by content key) across sessions
    for path in (app_env / "blobs").rglob("*"):
        if path.is_file():
            path.unlink()
    app = page(SETTINGS_PAGE)
    assert "could not be read from the image store" in texts(app.warning)
    app.text_input(key="preview_topic").input("puppy").run()
    assert not app.exception and "picture unavailable" in texts(app.caption)


def test_a_database_outage_is_a_message(app_env, monkeypatch):
    import app_state
    import settings as settings_module

    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:secret@127.0.0.1:9/none?connect_timeout=2")
    settings_module.get_settings.cache_clear()
    app_state.engine.clear()
    try:
        for path in (SETTINGS_PAGE, SAVINGS_PAGE):
            app = page(path)
            assert "The database is not answering; reconnecting…" in texts(app.warning)
            assert "secret" not in texts(app.warning) + texts(app.caption)
    finally:
        monkeypatch.undo()
        settings_module.get_settings.cache_clear()
        app_state.engine.clear()


# ---------------------------------------------------------------------- the savings page


def test_savings_page_on_an_empty_cache(app_env):
    app = page(SAVINGS_PAGE)
    assert metric(app, "Lookups") == "0" and metric(app, "Saved") == "$0.00"
    assert "No lookups yet" in texts(app.info)


def test_savings_figures_match_the_events(app_env, db, cache):
    for topic in ["dog", "dog", "puppy", "house", "home", "villa", "pizza", "Pizza"]:
        cache.get(topic)
    with db.begin() as conn:
        conn.execute(text("INSERT INTO semcache_events (query, key, kind, error) "
                          "VALUES ('broken', 'broken', 'error', 'GenerationError: down')"))
    app = page(SAVINGS_PAGE)
    expected = event_counts(db)
    assert count(metric(app, "Lookups")) == expected["lookups"] == 9
    assert count(metric(app, "Exact hits")) == expected["exact"] >= 2
    assert count(metric(app, "Semantic hits")) == expected["semantic"] >= 1
    assert count(metric(app, "Generations")) == expected["generated"]
    assert count(metric(app, "Errors")) == expected["errors"] == 1
    assert metric(app, "Spent") == f"${float(expected['spent']):,.2f}"
    assert metric(app, "Saved") == f"${float(expected['saved']):,.2f}"
    hits = expected["exact"] + expected["semantic"]
    assert metric(app, "Hit rate") == f"{hits / (hits + expected['generated']):.0%}"
    latency = app.dataframe[0].value
    assert set(latency["Path"]) == {"🎯 Exact hit", "🧭 Close phrase", "🎨 New picture", "⚠️ Error"}
    assert len(app.get("vega_lite_chart")) == 3  # hit rate, money, distances


@pytest.fixture
def replays(app_env):
    """The server's replays, none running and none remembered, before and after the test."""
    demo_topics.REPLAYS.forget()
    yield demo_topics.REPLAYS
    demo_topics.REPLAYS.forget()


OWNER = "me"  # AUTH_MODE=none: the one local user (DEFAULT_OWNER), an admin


def button(app: AppTest, label: str):
    return next(b for b in app.button if b.label == label)


def replayed_queries(db, after_id: int = 0) -> list[str]:
    with db.connect() as conn:
        return list(conn.execute(text("SELECT query FROM semcache_events WHERE id > :id ORDER BY id"),
                                 {"id": after_id}).scalars())


def test_the_demo_replay_adds_events(app_env, db, replays):
    app = page(SAVINGS_PAGE)
    app.number_input(key="demo_count").set_value(10)
    button(app, "Replay").click().run()
    assert not app.exception
    run = replays.wait(OWNER, timeout=TIMEOUT)
    assert run.state == "finished" and run.done == run.total == 10 and run.skipped == ()
    assert replayed_queries(db) == demo_topics.pick(10)
    app.run()  # what the page's live view shows on its next poll
    assert count(metric(app, "Lookups")) == 10
    assert any(str(p.proto.text).startswith("Replayed 10 topics") for p in app.get("progress"))
    assert f"Next up: topic 11, “{demo_topics.TOPICS[10]}”" in texts(app.caption)
    assert len(run.marks) == 10  # its own line, lookup by lookup
    assert [mark.number for mark in run.marks] == list(range(1, 11))


def test_the_replay_outlives_the_page_stops_from_another_tab_and_resumes(app_env, db, replays):
    """The replay runs on the server, not in the page's run: a second session (a reload, another
    tab) sees it live and stops it; Resume goes on from the next topic, not from the first."""
    first = page(SAVINGS_PAGE)
    first.number_input(key="demo_count").set_value(1000)
    button(first, "Replay").click().run()
    assert not first.exception

    reloaded = page(SAVINGS_PAGE)  # a new browser session
    assert any(str(p.proto.text).startswith(("Replaying", "Stopping")) for p in reloaded.get("progress"))
    assert not any(b.label == "Replay" for b in reloaded.button)  # one replay per user at a time
    with pytest.raises(demo_topics.ReplayBusy):
        replays.start(OWNER, reloaded_cache(), 5)
    button(reloaded, "Stop").click().run()
    stopped = replays.wait(OWNER, timeout=TIMEOUT)
    assert stopped.state == "stopped" and 0 < stopped.done < stopped.total
    done_before = replayed_queries(db)
    assert done_before == list(stopped.topics[:stopped.done])

    again = page(SAVINGS_PAGE)
    assert any(str(p.proto.text).startswith(f"Stopped after {stopped.done} of") for p in again.get("progress"))
    assert f"lookup {stopped.done + 1} of {stopped.total}" in texts(again.caption)
    button(again, "Resume").click().run()
    assert not again.exception
    while replays.progress(OWNER).done <= stopped.done:  # its next lookup is under way
        replays.wait_for_step(OWNER, timeout=TIMEOUT)
    replays.stop(OWNER)
    resumed = replays.wait(OWNER, timeout=TIMEOUT)
    assert resumed.state == "stopped" and stopped.done < resumed.done < resumed.total
    assert replayed_queries(db) == list(resumed.topics[:resumed.done])  # each topic once, in order: no restart
    assert [mark.number for mark in resumed.marks] == list(range(1, resumed.done + 1))


def reloaded_cache():
    import app_state

    return app_state.cache()


def test_the_replay_leaves_out_topics_already_cached_and_counts_earlier_pictures_apart(app_env, db, cache, replays):
    """Topics cached by earlier searches would be hits that say nothing of the replay: they are
    left out (and said), and a paraphrase served by an earlier picture is counted apart."""
    for topic in ("dog", "invoices"):
        cache.get(topic)
    before = max_event_id(db)
    app = page(SAVINGS_PAGE)
    app.number_input(key="demo_count").set_value(16)
    button(app, "Replay").click().run()
    run = replays.wait(OWNER, timeout=TIMEOUT)
    stretch = demo_topics.pick(16)
    assert run.skipped == ("dog", "invoices")
    assert list(run.topics) == [t for t in stretch if t.casefold() not in ("dog", "invoices")]
    assert replayed_queries(db, before) == list(run.topics)
    with db.connect() as conn:
        earlier = conn.execute(text("SELECT count(*) FROM semcache_events WHERE id > :id AND kind IN "
                                    "('exact', 'semantic') AND served_key IN ('dog', 'invoices')"),
                               {"id": before}).scalar()
    assert earlier >= 1  # "puppy" is served the picture of the earlier "dog"
    assert run.earlier_hits == earlier
    assert run.hit_rate == pytest.approx(run.own_hits / (run.own_hits + run.generated))
    app.run()
    assert "2 topics were left out, already cached from earlier searches (“dog”, “invoices”)" in texts(app.caption)
    shown = metric(app, "Replay hit rate")
    assert shown == f"{run.hit_rate:.0%}"
    assert metric(app, "From earlier pictures") == str(earlier)


def test_a_stretch_with_every_topic_cached_replays_nothing(app_env, db, cache, replays):
    cache.get("dog")
    app = page(SAVINGS_PAGE)
    app.number_input(key="demo_count").set_value(1)
    button(app, "Replay").click().run()
    run = replays.progress(OWNER)
    assert run.state == "finished" and run.total == 0 and run.skipped == ("dog",)
    assert "Nothing to replay in this stretch" in texts(app.info)
    assert f"Next up: topic 2, “{demo_topics.TOPICS[1]}”" in texts(app.caption)


def max_event_id(db) -> int:
    with db.connect() as conn:
        return conn.execute(text("SELECT COALESCE(max(id), 0) FROM semcache_events")).scalar()


def test_one_lookup_draws_no_line_and_every_axis_has_a_domain(app_env, db):
    """A line of one point has nothing to span: the page says so instead of drawing it; the
    charts it draws give their axes an extent outright."""
    add_events(db, [{"at": T0, "query": "dog", "kind": "generated", "spent": 0.04, "served_key": "dog"}])
    app = page(SAVINGS_PAGE)
    assert app.get("vega_lite_chart") == []
    assert "The lines over time start with the second lookup." in texts(app.caption)
    known_events(db)
    app = page(SAVINGS_PAGE)
    charts = app.get("vega_lite_chart")
    assert len(charts) == 3
    import json

    for chart in charts:
        spec = json.loads(chart.proto.spec)
        layers = spec.get("layer", [spec])
        for layer in layers:
            for channel in ("x", "y"):
                encoding = layer.get("encoding", {}).get(channel, {})
                if encoding.get("type") == "quantitative":
                    assert "domain" in encoding.get("scale", {}), (channel, encoding)


def test_demo_topics_repeat_and_vary():
    assert 180 <= len(demo_topics.TOPICS) <= 250
    keys = [t.casefold() for t in demo_topics.TOPICS]
    assert len(set(keys)) < len(keys)  # repeats: exact hits
    assert {"dog", "puppy", "doggy", "house", "villa", "home", "cottage", "trip to paris",
            "paris vacation"} <= set(keys)
    assert demo_topics.pick(3, start=len(keys) - 1) == [demo_topics.TOPICS[-1], *demo_topics.TOPICS[:2]]


# ---------------------------------------------------------------------- report.py on known events

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def add_events(db, rows: list[dict]) -> None:
    defaults = {"served_key": None, "distance": None, "threshold": 0.35, "embed_ms": None, "search_ms": None,
                "generate_ms": None, "blob_ms": None, "total_ms": None, "spent": 0, "saved": 0, "error": None}
    with db.begin() as conn:
        conn.execute(text("""
            INSERT INTO semcache_events (at, query, key, kind, served_key, distance, threshold, embed_ms,
                                         search_ms, generate_ms, blob_ms, total_ms, cost_spent_usd,
                                         cost_saved_usd, error)
            VALUES (:at, :query, :key, :kind, :served_key, :distance, :threshold, :embed_ms, :search_ms,
                    :generate_ms, :blob_ms, :total_ms, :spent, :saved, :error)"""),
            [{**defaults, "key": row["query"].lower(), **row} for row in rows])


def known_events(db) -> None:
    """Ten lookups, one a minute: 3 generated, 2 exact, 4 semantic, 1 error."""
    kinds = ["generated", "exact", "semantic", "generated", "semantic", "error", "semantic", "exact",
             "generated", "semantic"]
    distances = {2: 0.12, 4: 0.31, 6: 0.05, 9: 0.33}
    rows = []
    for i, kind in enumerate(kinds):
        row = {"at": T0 + timedelta(minutes=i), "query": f"Topic {i}", "kind": kind, "total_ms": float(10 * (i + 1)),
               "search_ms": 1.0 + i}
        if kind == "generated":
            row.update(spent=0.04, served_key=f"topic {i}", generate_ms=100.0 * (i + 1), embed_ms=5.0)
        elif kind in ("exact", "semantic"):
            row.update(saved=0.04, served_key="topic 0", distance=distances.get(i, 0.0), blob_ms=2.0)
        else:
            row.update(error="GenerationError: the image service is down.")
        rows.append(row)
    add_events(db, rows)


def test_report_totals(db):
    assert report.totals(db) == report.Totals(0, 0, 0, 0, 0, 0.0, 0.0, 0)
    known_events(db)
    totals = report.totals(db)
    assert (totals.lookups, totals.exact_hits, totals.semantic_hits, totals.generations, totals.errors) == \
        (10, 2, 4, 3, 1)
    assert totals.spent_usd == pytest.approx(0.12) and totals.saved_usd == pytest.approx(0.24)
    assert totals.hit_rate == pytest.approx(6 / 9) and totals.without_cache_usd == pytest.approx(0.36)
    assert totals.entries == 0


def test_report_latency_by_path(db):
    known_events(db)
    paths = {path.kind: path for path in report.latency_by_path(db)}
    assert list(paths) == ["exact", "semantic", "generated", "error"]
    generated = paths["generated"]  # total_ms 10, 40, 90; generate_ms 100, 400, 900
    assert generated.lookups == 3
    assert generated.total.p50_ms == pytest.approx(40.0)
    assert generated.total.p95_ms == pytest.approx(40 + 0.9 * 50)
    assert generated.generate.p50_ms == pytest.approx(400.0)
    assert paths["semantic"].generate.p50_ms is None and paths["semantic"].blob.p50_ms == pytest.approx(2.0)
    assert paths["exact"].total.p50_ms == pytest.approx((20 + 80) / 2)


def test_report_timeline(db):
    assert report.timeline(db).points == []
    known_events(db)
    by_minute = report.timeline(db, unit="minute")
    assert len(by_minute.points) == 10 and by_minute.points[0].at == T0
    last = by_minute.points[-1]
    assert last.lookup_number == 10 and last.cumulative_hit_rate == pytest.approx(6 / 9)
    assert last.saved_usd == pytest.approx(0.24) and last.spent_usd == pytest.approx(0.12)
    assert [p.hit_rate for p in by_minute.points[:3]] == [0.0, 1.0, 1.0]
    assert by_minute.points[5].answered == 0 and by_minute.points[5].hit_rate == 0.0

    by_lookup = report.timeline(db, unit="lookup", max_points=4)  # buckets of 3 lookups
    assert [p.lookup_number for p in by_lookup.points] == [3, 6, 9, 10]
    assert [p.hits for p in by_lookup.points] == [2, 1, 2, 1]
    assert by_lookup.points[0].at == T0 + timedelta(minutes=2)

    assert report.timeline(db).unit == "lookup"  # nine minutes apart: too short for minute buckets
    assert report.timeline(db, unit="hour").points[0].lookups == 10
    assert report.choose_unit(3600) == "minute" and report.choose_unit(2 * 86400) == "hour"
    assert report.choose_unit(30 * 86400) == "day"


def test_report_distance_histogram(db):
    assert report.distance_histogram(db) == []
    known_events(db)
    bins = report.distance_histogram(db, width=0.1)
    assert [(b.low, b.high, b.hits) for b in bins] == [(0.0, 0.1, 1), (0.1, 0.2, 1), (0.2, 0.3, 0), (0.3, 0.4, 2)]
    assert bins[0].label == "0.00–0.10"
    assert len(report.distance_histogram(db, width=0.1, up_to=0.6)) == 6
    with pytest.raises(ValueError):
        report.distance_histogram(db, width=0)


def test_report_recent_lookups_and_bans(db):
    known_events(db)
    with db.begin() as conn:
        conn.execute(text("INSERT INTO semcache_feedback (query_key, entry_key, verdict) "
                          "VALUES ('topic 9', 'topic 0', 'wrong')"))
    lookups = report.recent_lookups(db, limit=3)
    assert [row.query for row in lookups] == ["Topic 9", "Topic 8", "Topic 7"]
    assert lookups[0].banned and not lookups[2].banned
    semantic = report.recent_lookups(db, kinds=["semantic"])
    assert [row.query for row in semantic] == ["Topic 9", "Topic 6", "Topic 4", "Topic 2"]
    assert semantic[1].distance == pytest.approx(0.05) and semantic[1].saved_usd == pytest.approx(0.04)
    errors = report.recent_lookups(db, kinds=["error"])
    assert errors[0].error.startswith("GenerationError")


def test_report_threshold_setting(db, local_embedder, emoji_generator, tmp_path):
    assert report.threshold_setting(db, 0.35) == report.ThresholdSetting(0.35, False, None, None)
    SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(tmp_path)).set_threshold(0.3, actor="me")
    setting = report.threshold_setting(db, 0.35, model=local_embedder.model, dimensions=local_embedder.dimensions)
    assert setting.value == pytest.approx(0.3) and setting.stored and setting.updated_by == "me"
    assert setting.model == "all-MiniLM-L6-v2" and setting.dimensions == 384
    assert not report.threshold_setting(db, 0.35, model="another-model", dimensions=384).stored


def test_report_thumbnails_and_errors():
    from sqlalchemy.exc import OperationalError

    from semcache import BlobNotFound

    def read(key: str) -> bytes:
        if key == "gone":
            raise BlobNotFound("No blob gone in the store.")
        return b"\x89PNG"

    thumbs = report.thumbnails(read, ["a", "gone", "a"])
    assert thumbs.urls == {"a": "data:image/png;base64,iVBORw=="}
    assert thumbs.failures == {"gone": "No blob gone in the store."}
    message = explain(OperationalError("SELECT 1", {}, Exception("connection refused\nmore")))
    assert "database is not answering" in message and "connection refused" in message
    assert re.search(r"DATABASE_URL", message)


# ---------------------------------------------------------------------- other users' topics are text

HOSTILE_TOPIC = "Lawn ![x](http://127.0.0.1:9/p.png) http://127.0.0.1:9/a www.example.com :material/star: $x$"


def test_another_users_topic_is_text_on_the_savings_page(app_env, cache, replays):
    """A non-admin's topic, served to the demo replay, shows as written: no image is fetched."""
    import app_state
    from helpers import not_inert, shown_markdown

    entry = cache.get(HOSTILE_TOPIC, user="mallory")
    cache.set_threshold(2.0, actor="test")  # so that it answers the replay's first topic
    app = page(SAVINGS_PAGE)
    app.number_input(key="demo_count").set_value(1)
    next(b for b in app.button if b.label == "Replay").click().run()
    assert not app.exception
    replays.wait(OWNER, timeout=TIMEOUT)
    app.run()
    assert f"picture of “{app_state.md(entry.key)}”" in texts(app.markdown)
    problems = {source: not_inert(source) for source in shown_markdown(app)}
    assert {source: found for source, found in problems.items() if found} == {}


def test_another_users_topic_is_text_on_the_settings_page(app_env, cache):
    import app_state
    from helpers import not_inert, shown_markdown

    entry = cache.get(HOSTILE_TOPIC, user="mallory")
    cache.get("lawn www.example.org", user="mallory")
    app = page(SETTINGS_PAGE)
    app.slider(key="threshold").set_value(1.0).run()
    app.text_input(key="preview_topic").input("lawn :red[x] alice@example.com").run()
    assert not app.exception
    assert f"**{app_state.md(entry.key)}**" in texts(app.markdown)
    assert app_state.md("lawn :red[x] alice@example.com") in texts(app.success)
    problems = {source: not_inert(source) for source in shown_markdown(app)}
    assert {source: found for source, found in problems.items() if found} == {}
