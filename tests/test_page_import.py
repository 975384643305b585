"""The Import page, driven through Streamlit's AppTest against the test database, the real local
embedding model and the real IMAP server: uploads, a path on the server, an IMAP account and the
demo mailbox, with their summaries and their refusals."""

from __future__ import annotations

import io
import secrets
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import text

from mail.demo import write_demo_mbox

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "pages" / "import_mail.py"
OWNER = "page-import"


def count(engine, table: str, owner: str = OWNER) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table} WHERE owner = :owner"), {"owner": owner}).scalar_one()


def eml(subject: str, body: str = "Hello there.") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.com>"
    msg["To"] = "me@example.com"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 02 Jan 2024 10:00:00 +0000"
    msg["Message-ID"] = f"<{secrets.token_hex(8)}@example.com>"
    msg.set_content(body)
    return msg.as_bytes()


def counts(app) -> tuple[str, str, str]:
    """The summary's three metrics: imported, already here, failed."""
    by_label = {metric.label: metric.value for metric in app.metric}
    return by_label["Imported"], by_label["Already here"], by_label["Failed"]


def button(app, label: str):
    return next(b for b in app.button if b.label == label)


def page_text(app) -> str:
    """Every element and block of the page as its protobuf text: labels, values, defaults, help."""
    found: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            found.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(app._tree)
    return "\n".join(found)


@pytest.fixture
def settings_env(app_env, monkeypatch):
    """The app pointed at the test database, importing for OWNER, with a 1 MiB upload limit."""
    monkeypatch.setenv("DEFAULT_OWNER", OWNER)
    monkeypatch.setenv("MAX_UPLOAD_MB", "1")
    return app_env


@pytest.fixture
def open_page(settings_env):
    from streamlit.testing.v1 import AppTest

    def run(path: Path = PAGE):
        app = AppTest.from_file(str(path), default_timeout=120).run()
        assert not app.exception, app.exception
        return app

    return run


def test_page_renders_the_three_ways_in_and_the_demo(open_page):
    app = open_page()
    assert [tab.label for tab in app.tabs] == ["⬆️ Upload files", "🗂️ Path on the server", "📬 IMAP account"]
    assert app.file_uploader(key="upload_files").accept_multiple_files
    assert app.file_uploader(key="upload_files").proto.max_upload_size_mb == 1
    assert any("up to 1 MB each" in caption.value for caption in app.caption)
    assert OWNER in app.caption[0].value
    assert app.text_input(key="imap_password").proto.type == app.text_input(key="imap_password").proto.PASSWORD
    assert app.text_input(key="imap_folders").value == "INBOX"
    assert app.radio(key="imap_security").options == ["SSL/TLS", "STARTTLS", "Plain (localhost only)"]
    assert button(app, "Load the demo mailbox")
    assert not app.error and not app.metric


def test_path_import_shows_the_summary_and_a_second_import_reports_duplicates(open_page, db, tmp_path):
    mbox = tmp_path / "small.mbox"
    write_demo_mbox(mbox, count=20)
    app = open_page()
    app.text_input(key="import_path").input(str(mbox))
    button(app, "Import from the path").click().run()
    assert not app.exception and not app.error
    assert counts(app) == ("20", "0", "0")
    assert app.status[0].label == "Imported small.mbox: 20 new messages"
    assert count(db, "mail_messages") == 20 and count(db, "mail_embeddings") == 20
    assert count(db, "mail_messages", owner="someone-else") == 0
    assert "Open the Search page" in "".join(c.value for c in app.caption)  # run alone: no navigation

    button(app, "Import from the path").click().run()
    assert counts(app) == ("0", "20", "0")
    assert any("Nothing new" in info.value for info in app.info)
    assert count(db, "mail_messages") == 20


@pytest.mark.parametrize("name, content, says", [
    ("notes.txt", b"Shopping list\nmilk, eggs, bread\n", "is not an mbox file, a Maildir, .eml files or a .zip"),
    ("missing.mbox", None, "does not exist; check the path"),
])
def test_path_that_is_not_mail_shows_the_reason_and_imports_nothing(open_page, db, tmp_path, name, content, says):
    target = tmp_path / name
    if content is not None:
        target.write_bytes(content)
    app = open_page()
    app.text_input(key="import_path").input(str(target))
    button(app, "Import from the path").click().run()
    assert not app.exception
    assert len(app.error) == 1 and says in app.error[0].value
    assert "Traceback" not in page_text(app)
    assert app.status[0].label == f"{name} was not imported"
    assert not app.metric and count(db, "mail_messages") == 0


def test_uploads_several_files_at_once_and_reports_failures(open_page, db, tmp_path):
    mbox = tmp_path / "box.mbox"
    write_demo_mbox(mbox, count=5)
    app = open_page()
    app.file_uploader(key="upload_files").set_value([
        ("first.eml", eml("Invoice 42"), "message/rfc822"),
        ("second.eml", eml("Dinner on Friday"), "message/rfc822"),
        ("box.mbox", mbox.read_bytes(), "application/mbox"),
    ]).run()
    button(app, "Import the files").click().run()
    assert not app.exception and not app.error
    assert counts(app) == ("7", "0", "0")
    assert count(db, "mail_messages") == 7


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
    assert "escape.zip" in app.error[0].value
    assert count(db, "mail_messages") == 0

    app.file_uploader(key="upload_files").set_value(
        ("huge.mbox", b"From a@b Mon Jan 1 00:00:00 2024\n" + b"x" * (2 * 2**20), "application/mbox")).run()
    button(app, "Import the files").click().run()
    assert "over the 1 MiB limit for uploads" in app.error[0].value
    assert count(db, "mail_messages") == 0


def _fill_imap(app, server, password: str, folder: str) -> None:
    app.text_input(key="imap_host").input(server.host)
    app.number_input(key="imap_port").set_value(server.port)
    app.radio(key="imap_security").set_value("plain")
    app.text_input(key="imap_user").input(server.user)
    app.text_input(key="imap_folders").input(folder)
    app.text_input(key="imap_password").input(password)


def test_imap_import_and_a_wrong_password(open_page, db, imap_server):
    folder = f"PageImport{secrets.token_hex(4)}"
    for subject in ("Flight to Lisbon", "Vet appointment", "Quarterly report"):
        imap_server.append(folder, eml(subject))
    before = imap_server.flags(folder)

    app = open_page()
    _fill_imap(app, imap_server, imap_server.password, folder)
    button(app, "Import from IMAP").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert counts(app) == ("3", "0", "0")
    assert count(db, "mail_messages") == 3
    assert imap_server.flags(folder) == before  # nothing marked read
    assert imap_server.password not in page_text(app)
    assert "imap_password" not in app.session_state  # used for that run, then dropped

    # The next import continues after the last UID: nothing new.
    app.text_input(key="imap_password").input(imap_server.password)
    button(app, "Import from IMAP").click().run()
    assert counts(app) == ("0", "0", "0")
    assert any("no messages to import" in info.value for info in app.info)

    wrong = f"Wr0ng-{secrets.token_hex(6)}"
    app.text_input(key="imap_password").input(wrong)
    button(app, "Import from IMAP").click().run()
    assert not app.exception and len(app.error) == 1
    assert "refused the login" in app.error[0].value and "check the user name and password" in app.error[0].value
    assert wrong not in page_text(app) and imap_server.password not in page_text(app)
    assert "imap_password" not in app.session_state

    # The form was cleared on submit: sending it again does not log in with the old password.
    button(app, "Import from IMAP").click().run()
    assert not app.exception and app.error[0].value == f"Give the user name and password for {imap_server.host}."
    assert wrong not in page_text(app)
    assert count(db, "mail_messages") == 3


def test_plain_imap_to_another_host_is_refused(open_page, db):
    app = open_page()
    app.text_input(key="imap_host").input("imap.example.com")
    app.radio(key="imap_security").set_value("plain")
    app.text_input(key="imap_user").input("sam")
    app.text_input(key="imap_password").input("hunter2-secret")
    button(app, "Import from IMAP").click().run()
    assert not app.exception and len(app.error) == 1
    assert "Refusing to send the password for sam unencrypted" in app.error[0].value
    assert "hunter2-secret" not in page_text(app)


def test_demo_button_loads_the_demo_mailbox_and_links_to_search(settings_env, db, tmp_path):
    """Run inside a navigation like app.py's, so that the link to the Search page resolves."""
    from streamlit.testing.v1 import AppTest

    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "search.py").write_text("import streamlit as st\nst.title('Search stub')\n")
    main = tmp_path / "app.py"
    main.write_text("import streamlit as st\n"
                    f"st.navigation([st.Page({str(PAGE)!r}, title='Import', default=True),\n"
                    "               st.Page('pages/search.py', title='Search')]).run()\n")
    app = AppTest.from_file(str(main), default_timeout=120).run()
    assert not app.exception, app.exception
    button(app, "Load the demo mailbox").click().run()
    assert not app.exception and not app.error
    assert counts(app) == ("300", "0", "0")
    assert count(db, "mail_messages") == 300
    assert (settings_env / "demo.mbox").is_file()
    assert [link.value for link in app.page_link] == ["Search your mail"]


def test_database_outage_is_a_sentence_not_a_traceback(open_page, monkeypatch, tmp_path):
    import app_state
    import settings as settings_module

    mbox = tmp_path / "small.mbox"
    write_demo_mbox(mbox, count=3)
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")
    settings_module.get_settings.cache_clear()
    app_state.engine.clear()
    app = open_page()
    app.text_input(key="import_path").input(str(mbox))
    button(app, "Import from the path").click().run()
    assert not app.exception and len(app.error) == 1
    assert app.error[0].value.startswith("The database could not be reached")
    assert "try again" in app.error[0].value


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
