"""The Search page's tools around the results, run by Streamlit's AppTest against the test
database and the real model: the "read as" line, saved searches in the sidebar, labels on a
result, and the export button."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from helpers import LABELLED, mail, raw, run_page, unescaped
from mail.store import import_messages
from markup import markdown_text

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "search.py")


@pytest.fixture
def alice(app_env, monkeypatch, db, local_embedder):
    """The app as alice, with her mail (and some of bob's) imported."""
    monkeypatch.setenv("DEFAULT_OWNER", "alice")
    import_messages(db, "alice", raw(list(LABELLED.values())), embedder=local_embedder)
    import_messages(db, "bob", raw([mail("Bob's invoice", "Bob's invoice is his own")]), embedder=local_embedder)
    return db


def page(**url: str) -> AppTest:
    return run_page(PAGE, **url)


def run(widget) -> AppTest:
    """Run the page again after ``widget`` was clicked or filled in."""
    app = widget.run()
    assert not app.exception, app.exception
    return app


def url_query(app: AppTest) -> str:
    value = dict(app.query_params).get("q", "")
    return value[0] if isinstance(value, list) else value


def captions(app: AppTest) -> list[str]:
    return [unescaped(c.value) for c in app.caption]


def subjects(app: AppTest) -> list[str]:
    return [unescaped(m.value.strip("*")) for m in app.markdown if m.value.startswith("**")]


def test_the_query_is_read_back_part_by_part(alice):
    app = page(q="invoice from:alex has:attachment larger:1k foo:bar")
    assert ("Read as: words: invoice, foo:bar · from: alex · larger than 1 KB (1,024 bytes) · has attachment"
            " · not operators, searched as words: foo:bar") in captions(app)
    syntax = next(e for e in app.expander if e.label == "Search syntax")
    assert "`cc:name`" in syntax.markdown[0].value and "the size of the whole message" in syntax.markdown[0].value


def test_a_saved_search_is_listed_runs_and_is_deleted(alice):
    app = page(q="invoice has:attachment")
    assert "None yet" in " ".join(c.value for c in app.sidebar.caption)
    assert "saved-search-name" in [t.key for t in app.sidebar.text_input]
    app.sidebar.text_input(key="saved-search-name").input("Invoices")
    run(next(b for b in app.sidebar.button if b.label == "Save search").click())
    assert [b.label for b in app.sidebar.button if b.key and b.key.startswith("saved-run-")] == ["Invoices"]
    assert [b.help for b in app.sidebar.button if b.label == "Invoices"] == ["invoice has\\:attachment"]

    other = page(q="football")  # a new tab: the saved search is there, and runs on a click
    assert subjects(other) == ["Football practice"]
    run(next(b for b in other.sidebar.button if b.label == "Invoices").click())
    assert url_query(other) == "invoice has:attachment"
    assert other.text_input(key="q").value == "invoice has:attachment"
    assert subjects(other) == ["Invoice 2291"]

    run(next(b for b in other.sidebar.button if b.key and b.key.startswith("saved-delete-")).click())
    assert not [b for b in other.sidebar.button if b.key and b.key.startswith("saved-run-")]
    assert not [b for b in page(q="dog").sidebar.button if b.key and b.key.startswith("saved-run-")]


def test_a_nameless_save_says_what_to_do(alice):
    app = page(q="invoice")
    run(next(b for b in app.sidebar.button if b.label == "Save search").click())
    assert "Give the search a name." in [unescaped(w.value) for w in app.sidebar.warning]


def test_saved_searches_are_each_users_own(alice):
    from mail import labels

    labels.save_search(alice, "bob", "Bob's", "invoice")
    labels.save_search(alice, "alice", "[click](http://e.vil)", "dog")
    app = page(q="invoice")
    assert not [b for b in app.sidebar.button if b.label == "Bob's"]
    shown = [b.label for b in app.sidebar.button if b.key and b.key.startswith("saved-run-")]
    assert shown == [markdown_text("[click](http://e.vil)")]  # a name is text, never a link


def test_a_label_added_on_a_result_is_shown_found_and_removed(alice):
    app = page(q="invoice")
    assert subjects(app) == ["Invoice 2291"]
    box = next(t for t in app.text_input if t.key and t.key.startswith("label-new-"))
    box.input("Tax 2025")
    run(next(b for b in app.button if b.label == "Add").click())
    assert any("🏷️ tax-2025" in c for c in captions(app))

    found = page(q="label:tax-2025")
    assert subjects(found) == ["Invoice 2291"]
    assert "Read as: label: tax-2025" in captions(found)
    run(next(b for b in found.button if unescaped(b.label) == "✕ tax-2025").click())
    assert not any("🏷️" in c for c in captions(found))
    assert subjects(page(q="label:tax-2025")) == []


def test_the_export_button_gives_every_message_of_the_search(alice, monkeypatch, tmp_path):
    import mailbox

    from streamlit.runtime.media_file_manager import MediaFileManager

    import_messages(alice, "alice", raw([mail(f"Receipt {i:02}", f"Receipt number {i}.") for i in range(25)]))
    made = []
    register = MediaFileManager.add_deferred

    def recording(self, data_callable, *args, **kwargs):  # what the browser's click would run
        made.append(data_callable)
        return register(self, data_callable, *args, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", recording)
    app = page(q="subject:receipt")
    assert len(subjects(app)) == 20  # one page shown
    export = app.get("download_button")
    assert len(export) == 1 and made
    help_text = export[0].proto.help
    assert "up to 10,000" in help_text and "Attachments are not kept" in help_text
    path = tmp_path / "export.mbox"
    path.write_bytes(made[-1]())
    assert sorted(m["Subject"] for m in mailbox.mbox(str(path))) == [f"Receipt {i:02}" for i in range(25)]
    assert not page(q="subject:nothingmatchesthis").get("download_button")
