"""The Import page, driven through Streamlit's AppTest against the test database, the real local
embedding model and the real IMAP server: uploads, a path on the server, an IMAP account and the
demo mailbox become background imports (run here by a real worker loop, `run_imports`), listed
with their live progress, summaries, reasons and a Cancel button, the same after a reload."""

from __future__ import annotations

import io
import re
import secrets
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import text

from helpers import IMPORT_OWNER as OWNER
from helpers import IMPORT_PAGE as PAGE
from helpers import button, count, counts, eml, fill_imap, page_text, subheaders, unescaped
from mail.demo import write_demo_mbox

ROOT = Path(__file__).resolve().parent.parent


def test_page_renders_the_three_ways_in_and_the_demo(open_page):
    app = open_page()
    assert [tab.label for tab in app.tabs] == ["⬆️ Upload files", "🗂️ Path on the server", "📬 IMAP account"]
    assert app.file_uploader(key="upload_files").accept_multiple_files
    assert app.file_uploader(key="upload_files").proto.max_upload_size_mb == 1
    assert any("up to 1 MB each" in caption.value for caption in app.caption)
    assert OWNER in unescaped(app.caption[0].value)
    assert app.text_input(key="imap_password").proto.type == app.text_input(key="imap_password").proto.PASSWORD
    assert app.text_input(key="imap_folders").value == "INBOX"
    assert app.radio(key="imap_security").options == ["SSL/TLS", "STARTTLS", "Plain (localhost only)"]
    assert button(app, "Load the demo mailbox")
    assert not app.error and not app.metric


def test_an_import_runs_in_the_background_and_its_summary_survives_a_reload(open_page, db, tmp_path, run_imports):
    mbox = tmp_path / "small.mbox"
    write_demo_mbox(mbox, count=20)
    app = open_page()
    app.text_input(key="import_path").input(str(mbox))
    button(app, "Import from the path").click().run()
    assert not app.exception and not app.error
    assert count(db, "mail_messages") == 0  # the page only queued it
    assert "⏳ Queued small.mbox" in markdown(app)
    assert "no import worker is running" in captions(app)  # none yet: the page says how to start one
    assert button(app, "Cancel")

    run_imports()
    app = open_page()  # a reload: a new session, nothing but the database
    assert counts(app) == ("20", "0", "0")
    assert "From small.mbox" in subheaders(app)
    assert count(db, "mail_messages") == 20 and count(db, "mail_embeddings") == 20
    assert count(db, "mail_messages", owner="someone-else") == 0
    assert "Open the Search page" in captions(app)  # run alone: no navigation

    app.text_input(key="import_path").input(str(mbox))
    button(app, "Import from the path").click().run()
    run_imports()
    app.run()
    assert counts(app) == ("0", "20", "0")
    assert any("Nothing new" in info.value for info in app.info)
    assert count(db, "mail_messages") == 20
    assert "Earlier imports (1)" in [e.label for e in app.expander]


@pytest.mark.parametrize("name, content, says", [
    ("notes.txt", b"Shopping list\nmilk, eggs, bread\n", "is not an mbox file, a Maildir, .eml files or a .zip"),
    ("missing.mbox", None, "does not exist; check the path"),
])
def test_path_that_is_not_mail_shows_the_reason_and_imports_nothing(open_page, db, tmp_path, run_imports,
                                                                    name, content, says):
    target = tmp_path / name
    if content is not None:
        target.write_bytes(content)
    app = open_page()
    app.text_input(key="import_path").input(str(target))
    button(app, "Import from the path").click().run()
    run_imports()
    app.run()
    assert not app.exception
    assert len(app.error) == 1 and says in unescaped(app.error[0].value)
    assert "Traceback" not in page_text(app)
    assert f"{name} was not imported" in subheaders(app)
    assert not app.metric and count(db, "mail_messages") == 0


def test_uploads_several_files_at_once_and_reports_failures(open_page, db, tmp_path, run_imports, monkeypatch):
    import settings as settings_module

    monkeypatch.setenv("MAX_UPLOAD_MB", "3")
    monkeypatch.setenv("MAX_MESSAGE_MB", "1")
    settings_module.get_settings.cache_clear()
    mbox = tmp_path / "box.mbox"
    write_demo_mbox(mbox, count=5)
    with mbox.open("ab") as out:  # one message over the 1 MiB message limit
        out.write(b"From big@example.com Mon Jan  1 00:00:00 2024\nSubject: scans\nMessage-ID: <big@example.com>\n\n"
                  + b"x" * (3 * 2**19) + b"\n")
    app = open_page()
    app.file_uploader(key="upload_files").set_value([
        ("first.eml", eml("Invoice 42"), "message/rfc822"),
        ("second.eml", eml("Dinner on Friday"), "message/rfc822"),
        ("box.mbox", mbox.read_bytes(), "application/mbox"),
    ]).run()
    button(app, "Import the files").click().run()
    assert not app.exception and not app.error
    assert list((settings_dir(app) / "uploads").rglob("*.bin"))  # kept for the worker
    run_imports()
    app.run()
    assert counts(app) == ("7", "0", "1")
    assert count(db, "mail_messages") == 7
    assert "From 3 files" in subheaders(app)
    assert "Why 1 message failed" in [e.label for e in app.expander]
    reasons = app.dataframe[0].value
    assert list(reasons.columns) == ["Message", "Reason"] and "1 MiB" in reasons["Reason"][0]
    assert list((settings_dir(app) / "uploads").rglob("*.bin")) == []  # removed when the import ended


def settings_dir(app) -> Path:
    from settings import get_settings

    return get_settings().data_dir


def test_upload_refusals_import_nothing(open_page, db):
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w") as archive:
        archive.writestr("ok.eml", eml("Fine"))
        archive.writestr("../../etc/evil.eml", eml("Escapes"))
    app = open_page()
    uploader = app.file_uploader(key="upload_files")
    uploader.set_value([("good.eml", eml("Good one"), "message/rfc822"),
                        ("escape.zip", bomb.getvalue(), "application/zip")]).run()
    button(app, "Import the files").click().run()
    assert not app.exception and len(app.error) == 1
    assert "escape.zip" in unescaped(app.error[0].value)
    assert count(db, "mail_imports") == 0 and count(db, "mail_messages") == 0

    app.file_uploader(key="upload_files").set_value(
        ("huge.mbox", b"From a@b Mon Jan 1 00:00:00 2024\n" + b"x" * (2 * 2**20), "application/mbox")).run()
    button(app, "Import the files").click().run()
    assert "over the 1 MiB limit for uploads" in unescaped(app.error[0].value)
    assert count(db, "mail_imports") == 0


def test_imap_import_and_a_wrong_password(open_page, db, imap_server, run_imports):
    folder = f"PageImport{secrets.token_hex(4)}"
    for subject in ("Flight to Lisbon", "Vet appointment", "Quarterly report"):
        imap_server.append(folder, eml(subject))
    before = imap_server.flags(folder)

    app = open_page()
    fill_imap(app, imap_server, imap_server.password, folder)
    button(app, "Import from IMAP").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert "imap_password" not in app.session_state  # used to queue the import, then dropped
    run_imports()
    app = open_page()
    assert counts(app) == ("3", "0", "0")
    assert count(db, "mail_messages") == 3
    assert imap_server.flags(folder) == before  # nothing marked read
    assert imap_server.password not in page_text(app)

    # The next import continues after the last UID: nothing new.
    fill_imap(app, imap_server, imap_server.password, folder)
    button(app, "Import from IMAP").click().run()
    run_imports()
    app = open_page()
    assert counts(app) == ("0", "0", "0")
    assert any("no messages to import" in info.value for info in app.info)

    wrong = f"Wr0ng-{secrets.token_hex(6)}"
    fill_imap(app, imap_server, wrong, folder)
    button(app, "Import from IMAP").click().run()
    assert not app.exception and not app.error and "imap_password" not in app.session_state
    # The form was cleared on submit: sending it again queues nothing with the old password.
    button(app, "Import from IMAP").click().run()
    assert not app.exception and unescaped(app.error[0].value) == f"Give the user name and password for {imap_server.host}."
    assert wrong not in page_text(app)
    run_imports()
    app = open_page()
    assert not app.exception and len(app.error) == 1
    refusal = unescaped(app.error[0].value)
    assert "refused the login" in refusal and "check the user name and password" in refusal
    assert wrong not in page_text(app) and imap_server.password not in page_text(app)
    assert count(db, "mail_messages") == 3 and count(db, "mail_imports") == 3


def test_plain_imap_to_another_host_is_refused(open_page, db):
    app = open_page()
    app.text_input(key="imap_host").input("imap.example.com")
    app.radio(key="imap_security").set_value("plain")
    app.text_input(key="imap_user").input("sam")
    app.text_input(key="imap_password").input("hunter2-secret")
    button(app, "Import from IMAP").click().run()
    assert not app.exception and len(app.error) == 1
    assert "Refusing to send the password for sam unencrypted" in unescaped(app.error[0].value)
    assert "hunter2-secret" not in page_text(app)
    assert count(db, "mail_imports") == 0


def test_demo_button_loads_the_demo_mailbox_and_links_to_search(settings_env, db, tmp_path, run_imports):
    """Run inside a navigation like app.py's, so that the link to the Search page resolves."""
    from streamlit.testing.v1 import AppTest

    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "search.py").write_text("import streamlit as st\nst.title('Search stub')\n")
    main = tmp_path / "app.py"
    main.write_text("import streamlit as st\n"
                    "import auth, import_views\n"
                    "import_views.sidebar_status(auth.require_user().name)\n"
                    f"st.navigation([st.Page({str(PAGE)!r}, title='Import', default=True),\n"
                    "               st.Page('pages/search.py', title='Search')]).run()\n")
    app = AppTest.from_file(str(main), default_timeout=120).run()
    assert not app.exception, app.exception
    button(app, "Load the demo mailbox").click().run()
    assert "⏳ Queued the demo mailbox" in markdown(app)
    assert not [t for t in app.toast if "loaded" in t.value]  # not yet
    run_imports()
    app.run()
    assert not app.exception and not app.error
    # The session that asked for it is told once that it is done, whichever page it is on.
    assert [toast.value for toast in app.toast] == ["Demo mailbox loaded: 300 messages."], app.toast
    app.run()
    assert not app.toast
    assert counts(app) == ("300", "0", "0")
    assert count(db, "mail_messages") == 300
    assert (settings_env / "demo.mbox").is_file()
    assert [link.value for link in app.page_link] == ["Search your mail"]


def test_queued_behind_the_first_live_progress_after_a_reload_and_cancel(open_page, db, tmp_path, local_embedder,
                                                                        pg_url):
    """A real worker loop in a thread runs the imports while the page is opened afresh."""
    import asyncio
    import threading
    import time

    import services
    from mail.jobs import psycopg_conninfo
    from mail.jobs_worker import serve, worker_app
    from settings import get_settings

    big, small = tmp_path / "big.mbox", tmp_path / "small.mbox"
    write_demo_mbox(big, count=1200)
    write_demo_mbox(small, count=5)
    app = open_page()
    for path in (big, small):
        app.text_input(key="import_path").input(str(path))
        button(app, "Import from the path").click().run()
    assert "starts when your import of big.mbox is done" in captions(app)

    runner = services.build_import_runner(get_settings(), db, local_embedder)
    worker = threading.Thread(target=lambda: asyncio.run(serve(worker_app(psycopg_conninfo(pg_url)), runner,
                                                               once=True)))
    worker.start()
    try:
        deadline = time.monotonic() + 300
        while True:
            app = open_page()  # every look is a fresh session: all it knows comes from the database
            if "of 1,200 messages" in page_text(app) and "messages a second" in captions(app):
                break
            assert time.monotonic() < deadline, page_text(app)
            time.sleep(0.5)
        assert "📥 Importing big.mbox" in markdown(app) and "⏳ Queued small.mbox" in markdown(app)
        assert "left" in captions(app)  # and the time left
        button(app, "Cancel").click().run()  # the first Cancel is big.mbox's
        assert not app.exception
    finally:
        worker.join(timeout=300)
    assert not worker.is_alive()
    assert dict(_rows(db, "SELECT label, status FROM mail_imports")) == {"big.mbox": "cancelled",
                                                                          "small.mbox": "done"}
    app = open_page()
    # The latest to finish, in full (the demo generator repeats itself: some were already here);
    # the cancelled one is listed below it.
    assert "From small.mbox" in subheaders(app) and sum(map(int, counts(app))) == 5
    assert "Earlier imports (1)" in [e.label for e in app.expander]
    assert 200 <= count(db, "mail_messages") < 1200


def _rows(db, sql: str):
    with db.connect() as conn:
        return conn.execute(text(sql)).all()


def test_a_user_sees_only_their_own_imports(open_page, db, tmp_path, monkeypatch, run_imports):
    import settings as settings_module

    mbox = tmp_path / "mine.mbox"
    write_demo_mbox(mbox, count=3)
    app = open_page()
    app.text_input(key="import_path").input(str(mbox))
    button(app, "Import from the path").click().run()
    monkeypatch.setenv("DEFAULT_OWNER", "someone-else")
    settings_module.get_settings.cache_clear()
    other = open_page()
    assert "mine.mbox" not in page_text(other) and not other.metric
    assert not [b for b in other.button if b.label == "Cancel"]


def test_database_outage_is_a_sentence_not_a_traceback(open_page, monkeypatch, tmp_path):
    import app_state
    import settings as settings_module

    mbox = tmp_path / "small.mbox"
    write_demo_mbox(mbox, count=3)
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")
    settings_module.get_settings.cache_clear()
    app_state.engine.clear()
    app_state.import_queue.clear()
    app = open_page()
    assert unescaped(app.error[0].value).startswith("The database could not be reached")  # where the imports would be
    app.text_input(key="import_path").input(str(mbox))
    button(app, "Import from the path").click().run()
    assert not app.exception and app.error
    assert all(e.value.startswith("The database could not be reached") and "try again" in e.value for e in app.error)
    assert "Traceback" not in page_text(app)


def test_helper_refuses_before_importing_and_parses_folders(db, local_embedder):
    from mail.importing import import_uploads, parse_folders
    from mail.types import ImportRefused

    assert parse_folders(" INBOX, Archive/2024 ,,INBOX") == ["INBOX", "Archive/2024"]
    assert parse_folders("") == ["INBOX"]
    with pytest.raises(ImportRefused, match="notes.txt"):
        import_uploads(db, OWNER, [("a.eml", eml("Kept out")), ("notes.txt", b"just words")],
                       embedder=local_embedder)
    assert count(db, "mail_messages") == 0
    summary = import_uploads(db, OWNER, [("a.eml", eml("In"))], embedder=local_embedder)
    assert (summary.imported, summary.duplicates, summary.failed) == (1, 0, 0)


def markdown(app) -> str:
    return unescaped("\n".join(m.value for m in app.markdown))


def captions(app) -> str:
    return unescaped("\n".join(c.value for c in app.caption))


def test_the_sidebar_of_every_page_shows_the_users_imports(settings_env, db, tmp_path, local_embedder):
    from streamlit.testing.v1 import AppTest

    import services
    from mail.jobs_worker import ImportRunner
    from settings import get_settings

    mbox = tmp_path / "side.mbox"
    write_demo_mbox(mbox, count=5)
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not app.exception and not [c for c in app.sidebar.caption if "📥" in c.value]

    queue = services.build_import_queue(get_settings(), db)
    queue.enqueue_path(OWNER, str(mbox))
    queue.enqueue_path(OWNER, str(mbox))
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not app.exception
    assert [unescaped(c.value) for c in app.sidebar.caption if "📥" in c.value] == ["📥 2 imports queued"]

    # The first one running, as a worker's claim leaves it: the sidebar follows its progress.
    runner = ImportRunner(engine=db, embedder=local_embedder, uploads=queue.uploads, secrets=queue.secrets,
                          data_dir=tmp_path)
    first = queue.active(OWNER)[0]
    runner._claim(first.id)
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    shown = [unescaped(c.value) for c in app.sidebar.caption if "📥" in c.value]
    assert shown == ["📥 Importing **side.mbox**", "📥 1 import queued"]
    queue.close()
