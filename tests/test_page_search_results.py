"""The Search page's results as a mail client shows them: true counts, sort and conversations in
the URL, and nothing (or an honest note) for words no message contains. Streamlit's AppTest
against the test database and the real model."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from helpers import LABELLED, captions, mail, markdown, raw, run_page, unescaped
from mail.store import import_messages

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "search.py")
START = datetime(2024, 1, 1, 9, tzinfo=timezone.utc)


@pytest.fixture
def alice(app_env, monkeypatch):
    monkeypatch.setenv("DEFAULT_OWNER", "alice")
    return app_env


def opened(**url: str) -> AppTest:
    return run_page(PAGE, **url)


def subjects(app: AppTest) -> list[str]:
    return [unescaped(m.value.strip("*")) for m in app.markdown if m.value.startswith("**")]


def url(app: AppTest) -> dict[str, str]:
    return {k: (v[0] if isinstance(v, list) else v) for k, v in dict(app.query_params).items()}


def test_the_count_is_every_match_and_the_last_page_shows_the_rest(alice, db, local_embedder):
    invoices = [mail(f"Invoice {i:04d}", f"Invoice {i:04d} for the garden work.", date=START + timedelta(days=i))
                for i in range(230)]
    import_messages(db, "alice", raw(invoices), embedder=local_embedder)
    app = opened(q="invoice")
    assert "230 messages" in captions(app) and "Page 1 of 12" in captions(app)
    last = opened(q="invoice", page="12")
    assert "Page 12 of 12" in captions(last) and len(subjects(last)) == 10


def test_sort_and_conversations_live_in_the_url(alice, db, local_embedder):
    root = "<party.0@example.com>"
    messages = [mail(f"Garden note {i}", f"A garden note, number {i}.", date=START + timedelta(days=i))
                for i in range(5)]
    messages += [mail("Garden party", "The garden party is on Saturday.", message_id=root,
                      date=START + timedelta(days=10)),
                 mail("Re: Garden party", "I will bring garden chairs.", message_id="<party.1@example.com>",
                      references=root, date=START + timedelta(days=11))]
    import_messages(db, "alice", raw(messages), embedder=local_embedder)

    app = opened(q="garden")
    assert app.selectbox(key="sort").value == "relevance" and url(app) == {"q": "garden"}
    app.selectbox(key="sort").set_value("oldest").run()
    assert not app.exception
    assert url(app) == {"q": "garden", "sort": "oldest"}
    assert subjects(app)[0] == "Garden note 0"

    reloaded = opened(**url(app))
    assert reloaded.selectbox(key="sort").value == "oldest" and subjects(reloaded)[0] == "Garden note 0"
    reloaded.selectbox(key="sort").set_value("newest").run()
    assert subjects(reloaded)[0] == "Re: Garden party" and url(reloaded)["sort"] == "newest"

    reloaded.toggle(key="threads").set_value(True).run()
    assert not reloaded.exception
    assert url(reloaded) == {"q": "garden", "sort": "newest", "threads": "1"}
    assert "6 conversations" in captions(reloaded) and "2 messages" in captions(reloaded)
    assert subjects(reloaded).count("Re: Garden party") + subjects(reloaded).count("Garden party") == 1

    again = opened(**url(reloaded))
    assert again.toggle(key="threads").value is True and "6 conversations" in captions(again)
    again.text_input(key="q").input("garden party").run()
    assert url(again) == {"q": "garden party", "sort": "newest", "threads": "1"}, "a new search keeps the view"


def test_a_made_up_word_finds_nothing_and_meaning_alone_is_said(alice, db, local_embedder):
    odd = [mail("Password reset code", "Your code is QXZ-7731-VLR."), mail("asdf", "qwerty asdf jkl"),
           mail("Order KLB-4421 shipped", "Tracking number ZX9QV7."), mail("Re: zorp", "zorp zorp")]
    import_messages(db, "alice", raw(list(LABELLED.values()) + odd), embedder=local_embedder)
    nonsense = opened(q="xqzvlorptak")
    assert "0 messages" in captions(nonsense) and not subjects(nonsense)
    assert "No message contains xqzvlorptak, and none is close in meaning" in nonsense.info[0].value

    meaning = opened(q="canine")
    assert "No message contains *canine*; these are the closest by meaning:" in markdown(meaning)
    assert "Dog walking rota" in subjects(meaning)
    words = opened(q="dog")
    assert "closest by meaning" not in markdown(words) and "Dog walking rota" in subjects(words)


def test_the_search_box_examples_find_something_in_the_demo_mailbox(alice, db, local_embedder, tmp_path):
    from mail.demo import write_demo_mbox
    from mail.importing import DEMO_MESSAGES
    from mail.sources import open_source

    write_demo_mbox(tmp_path / "demo.mbox", count=DEMO_MESSAGES)
    import_messages(db, "alice", open_source(tmp_path / "demo.mbox"), embedder=local_embedder)
    app = opened()
    examples = app.text_input(key="q").placeholder.split(" · ")
    assert len(examples) >= 3
    for example in examples:
        app.text_input(key="q").input(example).run()
        assert not app.exception, example
        assert subjects(app), example
        assert not app.info and "closest by meaning" not in markdown(app), example
