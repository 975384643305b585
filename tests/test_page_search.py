"""The Search page, run by Streamlit's AppTest against the test database and the real model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from conftest import MAKING_A_PICTURE, picture_shown
from mail.store import import_messages
from helpers import LABELLED, MESSAGE_VIEW_TAGS, captions, mail, markdown, opened_message, raw

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "search.py")


@pytest.fixture
def alice(app_env, monkeypatch):
    """The app, as alice."""
    monkeypatch.setenv("DEFAULT_OWNER", "alice")
    return app_env


def run_query(app: AppTest, query: str) -> AppTest:
    app.text_input(key="q").input(query).run()
    assert not app.exception, app.exception
    return app


MAKING = MAKING_A_PICTURE
picture = picture_shown


def test_empty_mailbox_leads_to_import_or_demo(alice, run_imports):
    app = AppTest.from_file(PAGE, default_timeout=180).run()
    assert not app.exception
    assert "no mail here yet" in app.info[0].value
    next(b for b in app.button if b.label == "Load the demo mailbox").click().run()
    assert not app.exception
    assert [h.value for h in app.subheader] == ["Loading the demo mailbox…"]  # a background import, followed live
    assert not [t for t in app.text_input if t.key == "q"]
    run_imports()
    app.run()
    assert not app.exception
    assert app.text_input(key="q") is not None, "after loading the demo the search box appears"


def test_search_shows_results_and_the_topic_image(alice, db, local_embedder):
    import_messages(db, "alice", raw(list(LABELLED.values())), embedder=local_embedder)
    import_messages(db, "bob", raw([mail("Bob's dog", "Bob's dog is private to Bob")]), embedder=local_embedder)
    app = AppTest.from_file(PAGE, default_timeout=180).run()

    run_query(app, "dog")
    assert "Dog walking rota" in markdown(app)
    assert "Bob's dog" not in markdown(app), "another owner's mail never shows"
    assert "<mark>dog</mark>" in markdown(app)
    assert "Generated ($0.04)" in captions(picture(app))

    picture(run_query(app, "puppy"))
    assert "Served from cache: *dog*" in captions(app) and "saved $0.04" in captions(app)

    picture(run_query(app, "dog"))
    assert "Exact cache hit" in captions(app)


def test_query_errors_are_messages(alice, db, local_embedder):
    import_messages(db, "alice", raw(list(LABELLED.values())), embedder=local_embedder)
    app = AppTest.from_file(PAGE, default_timeout=180).run()
    run_query(app, "after:someday")
    assert app.warning and "after" in app.warning[0].value


def test_image_outage_keeps_the_results(alice, db, local_embedder, fake_openai, monkeypatch):
    import_messages(db, "alice", raw(list(LABELLED.values())), embedder=local_embedder)
    monkeypatch.setenv("IMAGE_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", fake_openai.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("OPENAI_MAX_RETRIES", "0")
    fake_openai.fail_next(status=500, times=5, path="/v1/images/generations")
    app = AppTest.from_file(PAGE, default_timeout=180).run()
    run_query(app, "invoice")
    assert "Invoice 2291" in markdown(app)
    assert "No picture this time" in captions(picture(app))
    assert fake_openai.api_key not in captions(app)


def test_a_daily_limit_is_a_note_beside_the_results(alice, db, local_embedder, monkeypatch):
    import_messages(db, "alice", raw(list(LABELLED.values())), embedder=local_embedder)
    monkeypatch.setenv("DAILY_IMAGES_PER_USER", "0")
    app = AppTest.from_file(PAGE, default_timeout=180).run()
    run_query(app, "dog")
    assert "Dog walking rota" in markdown(app)
    assert "No new picture:" in captions(picture(app))


def lookups(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(text("SELECT query, kind FROM semcache_events ORDER BY id")).all()


def test_results_come_first_and_clicks_never_wait_for_the_picture(alice, db, local_embedder, fake_openai,
                                                                  monkeypatch):
    """With an image service that holds its answer, the results, a message opened and the next
    page are all drawn while the picture is being made; it appears on a later run, and none of
    those runs looks the topic up again."""
    invoices = [mail(f"Invoice {n:04d}", f"Invoice {n:04d} for the garden work, due in 30 days.") for n in range(25)]
    import_messages(db, "alice", raw(invoices), embedder=local_embedder)
    monkeypatch.setenv("IMAGE_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", fake_openai.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("OPENAI_MAX_RETRIES", "0")
    monkeypatch.setenv("OPENAI_TIMEOUT_SECONDS", "600")
    fake_openai.hang_next(seconds=300, path="/v1/images/generations")
    images = lambda: fake_openai.requests_to("/v1/images/generations")  # noqa: E731
    app = AppTest.from_file(PAGE, default_timeout=180).run()

    try:
        run_query(app, "invoice")
        assert "Invoice 00" in markdown(app) and "Page 1 of 2" in captions(app)
        assert MAKING in captions(app) and not app.image

        app.button(key=next(b.key for b in app.button if b.key and b.key.startswith("open-"))).click().run()
        assert not app.exception
        assert "for the garden work" in opened_message(app)[0], "the message opened at once"
        assert MAKING in captions(app)

        app.button(key="close-message").click().run()
        next(b for b in app.button if b.label == "Next →").click().run()
        assert not app.exception
        assert "Page 2 of 2" in captions(app) and MAKING in captions(app)
        deadline = time.monotonic() + 60
        while not images():
            assert time.monotonic() < deadline, "the picture was never asked for"
            time.sleep(0.1)
        assert len(images()) == 1
    finally:
        fake_openai.release_hangs()

    assert "Generated ($0.04)" in captions(picture(app)) and app.image
    assert "Page 2 of 2" in captions(app), "the picture arriving keeps the page the user is on"
    next(b for b in app.button if b.label == "← Previous").click().run()
    app.button(key=next(b.key for b in app.button if b.key and b.key.startswith("open-"))).click().run()
    assert not app.exception and "Generated ($0.04)" in captions(app)
    assert len(images()) == 1
    assert lookups(db) == [("invoice", "generated")], "one lookup for the topic typed"


def test_the_search_and_its_page_live_in_the_url(alice, db, local_embedder):
    """Opening ?q=invoice searches for it; typing a search and turning the page write both into
    the URL, so a reload (a new session on that URL) shows the same page; pagers above and below."""
    invoices = [mail(f"Invoice {n:04d}", f"Invoice {n:04d} for the garden work, due in 30 days.") for n in range(45)]
    import_messages(db, "alice", raw(invoices), embedder=local_embedder)

    opened = AppTest.from_file(PAGE, default_timeout=180)
    opened.query_params["q"] = "invoice"
    opened.run()
    assert not opened.exception
    assert opened.text_input(key="q").value == "invoice" and "Invoice 00" in markdown(opened)
    assert captions(opened).count("Page 1 of 3") == 2, "a pager above the results and one below"

    app = run_query(AppTest.from_file(PAGE, default_timeout=180).run(), "garden invoice")
    assert dict(app.query_params) == {"q": ["garden invoice"]} or dict(app.query_params) == {"q": "garden invoice"}
    [b for b in app.button if b.label == "Next →"][-1].click().run()  # the lower pager
    assert not app.exception and "Page 2 of 3" in captions(app)
    url = {k: (v[0] if isinstance(v, list) else v) for k, v in dict(app.query_params).items()}
    assert url == {"q": "garden invoice", "page": "2"}
    first_on_page_2 = next(m.value for m in app.markdown if m.value.startswith("**Invoice"))

    reloaded = AppTest.from_file(PAGE, default_timeout=180)
    for key, value in url.items():
        reloaded.query_params[key] = value
    reloaded.run()
    assert not reloaded.exception
    assert reloaded.text_input(key="q").value == "garden invoice" and "Page 2 of 3" in captions(reloaded)
    assert next(m.value for m in reloaded.markdown if m.value.startswith("**Invoice")) == first_on_page_2

    run_query(reloaded, "invoice due")
    url = {k: (v[0] if isinstance(v, list) else v) for k, v in dict(reloaded.query_params).items()}
    assert url == {"q": "invoice due"} and "Page 1 of 3" in captions(reloaded), "a new search starts at its first page"

    beyond = AppTest.from_file(PAGE, default_timeout=180)
    beyond.query_params["q"], beyond.query_params["page"] = "invoice", "999"
    beyond.run()
    assert not beyond.exception and "Page 3 of 3" in captions(beyond), "a page that is no more shows the last one"
    assert {k: (v[0] if isinstance(v, list) else v) for k, v in dict(beyond.query_params).items()} == {
        "q": "invoice", "page": "3"}


def test_opening_a_result_shows_the_thread_as_text(alice, db, local_embedder):
    html = mail("Party invite", "<p>Come to the <b>party</b><script>alert('x')</script></p>", html=True)
    import_messages(db, "alice", raw([html]), embedder=local_embedder)
    app = AppTest.from_file(PAGE, default_timeout=180).run()
    run_query(app, "party")
    app.button(key=next(b.key for b in app.button if b.key and b.key.startswith("open-"))).click().run()
    assert not app.exception
    shown, tags = opened_message(app)
    assert "Come to the party" in shown and "alert" not in shown and "<script" not in shown
    assert tags <= MESSAGE_VIEW_TAGS, "the mail's own markup is text"


HOSTILE_SUBJECT = "Garden ![x](http://127.0.0.1:9/p.png) http://127.0.0.1:9/a www.example.com :material/star:"


def test_mail_and_other_users_topics_show_as_text(alice, db, local_embedder, emoji_generator):
    """Subjects, senders, snippets, addresses and the phrase that answered are text: no image, no
    link (also no bare one), no icon; the snippet keeps its highlight."""
    from semcache import SemanticCache
    from semcache.blobstores import LocalBlobStore
    from helpers import not_inert, shown_markdown

    import app_state

    hostile = mail(HOSTILE_SUBJECT, "Garden party :red[now]: see http://127.0.0.1:9/a or www.example.com, "
                                    "ask mallory@example.com $x$ -> <b>here</b>",
                   sender="Mallory ![y](http://127.0.0.1:9/s.png) <mallory@example.com>",
                   to="team@example.org, www.example.net")
    import_messages(db, "alice", raw([hostile]), embedder=local_embedder)
    cache = SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(alice / "blobs"), default_threshold=0.35)
    cache.get("lawn ![x](http://127.0.0.1:9/p.png) www.example.com", user="mallory")  # another user's topic
    cache.set_threshold(2.0, actor="test")  # so that it answers the next search

    app = picture(run_query(AppTest.from_file(PAGE, default_timeout=180).run(), "garden"))
    assert f"**{app_state.md(HOSTILE_SUBJECT)}**" in markdown(app)
    assert "<mark>Garden</mark>" in markdown(app) or "<mark>garden</mark>" in markdown(app)
    assert "Served from cache: *" + app_state.md("lawn ![x](http://127.0.0.1:9/p.png) www.example.com") in captions(app)
    app.button(key=next(b.key for b in app.button if b.key and b.key.startswith("open-"))).click().run()
    assert not app.exception
    shown, tags = opened_message(app)
    assert "to team@example.org, www.example.net" in shown and HOSTILE_SUBJECT in shown
    assert tags <= MESSAGE_VIEW_TAGS, "subject, sender and addresses are text"
    problems = {source: not_inert(source) for source in shown_markdown(app)}
    assert {source: found for source, found in problems.items() if found} == {}


def test_an_opened_message_lives_in_the_url_in_place_of_the_results(alice, db, local_embedder):
    """Open puts ?open=<id> in the URL and shows the message instead of the results, the picture
    still beside it; a reload keeps it; "Back to results" returns to the same page of results. An
    id that is not a message of this mailbox, or not an id, shows no mail and no error."""
    invoices = [mail(f"Invoice {n:02d}", f"Invoice {n:02d} for the garden work, due in 30 days.") for n in range(25)]
    import_messages(db, "alice", raw(invoices), embedder=local_embedder)
    import_messages(db, "bob", raw([mail("Bob's invoice", "Bob's private invoice")]), embedder=local_embedder)
    with db.connect() as conn:
        bobs = conn.execute(text("SELECT id FROM mail_messages WHERE owner = 'bob'")).scalar_one()
    url = lambda app: {k: (v[0] if isinstance(v, list) else v) for k, v in dict(app.query_params).items()}  # noqa: E731

    app = AppTest.from_file(PAGE, default_timeout=180)
    app.query_params["q"], app.query_params["page"] = "invoice", "2"
    picture(app.run())
    pk = int(next(b.key for b in app.button if b.key and b.key.startswith("open-")).removeprefix("open-"))
    app.button(key=f"open-{pk}").click().run()
    assert not app.exception
    assert url(app) == {"q": "invoice", "page": "2", "open": str(pk)}
    shown = opened_message(app)[0]
    assert "for the garden work" in shown and not [b for b in app.button if b.key and b.key.startswith("open-")]
    assert "Page 2 of 2" not in captions(app) and app.image, "the results give way, the picture stays"

    reloaded = AppTest.from_file(PAGE, default_timeout=180)
    for key, value in url(app).items():
        reloaded.query_params[key] = value
    reloaded.run()
    assert not reloaded.exception and opened_message(reloaded)[0] == shown

    reloaded.button(key="close-message").click().run()
    assert url(reloaded) == {"q": "invoice", "page": "2"} and "Page 2 of 2" in captions(reloaded)
    assert opened_message(reloaded) == ("", set())

    for crafted, says in ((str(bobs), "That message is not in your mailbox."), ("9" * 18, "That message is not "
                          "in your mailbox."), ("abc", None), ("9" * 40, None), ("１２", None)):
        other = AppTest.from_file(PAGE, default_timeout=180)
        other.query_params["q"], other.query_params["open"] = "invoice", crafted
        other.run()
        assert not other.exception, crafted
        assert "Bob's" not in opened_message(other)[0] + markdown(other), crafted
        assert [w.value for w in other.warning] == ([says] if says else []), crafted
        assert ("Page 1 of 2" in captions(other)) == (says is None), "not an id: the results"
