"""What a user sees of an error no page expected: a sentence and a reference, never a traceback,
SQL or a server path. Driven through Streamlit's AppTest on the real app.py, with a real fault
in the test database (a table gone), signed in as a non-admin and as an admin; and what the
Import page says of an IMAP host it may not reach."""

from __future__ import annotations

import logging
import re
import tomllib
from pathlib import Path

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from helpers import page_text

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
PASSWORD = "correct horse battery staple"


def test_streamlit_shows_no_error_details():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"


@pytest.fixture
def imports_table_gone(db):
    """A fault no page expects: the imports' table is not there (ProgrammingError with its SQL)."""
    with db.begin() as conn:
        conn.execute(text("ALTER TABLE mail_imports RENAME TO mail_imports_away"))
    try:
        yield
    finally:
        with db.begin() as conn:
            conn.execute(text("ALTER TABLE mail_imports_away RENAME TO mail_imports"))


@pytest.mark.parametrize("name", ["carol", "boss"])
def test_an_unexpected_error_shows_a_sentence_and_a_reference(password_mode, db, imports_table_gone, name,
                                                              caplog):
    from db.accounts import Accounts

    accounts = Accounts(db)
    accounts.create_account(name, PASSWORD)  # an admin only if ADMIN_USERS names it
    app = AppTest.from_file(APP, default_timeout=120)
    app.session_state["auth_token"] = accounts.sign_in(name, PASSWORD).token
    with caplog.at_level(logging.ERROR, logger="mailsearch.app"):
        app.run()  # the Search page of an empty mailbox looks for a demo import: the table is gone

    assert not app.exception, "no traceback reaches the page"
    shown = page_text(app)
    sentence = next(e.value for e in app.error if e.value.startswith("Something went wrong on this page."))
    reference = re.search(r"reference \*\*([0-9a-f]{8})\*\*", sentence).group(1)
    for leak in ("mail_imports", "SELECT", "Traceback", "psycopg", str(ROOT), "/var/tmp", ".py"):
        assert leak not in shown, leak
    admin_note = "sqlalchemy.exc.ProgrammingError: the traceback is in the server"
    assert (admin_note in shown) is (name == "boss")
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert logged and logged[0].exc_info and "mail_imports" in str(logged[0].exc_info[1])


@pytest.mark.parametrize("name", ["carol", "boss"])
def test_an_imap_host_on_this_machine_is_refused_on_the_page(password_mode, db, monkeypatch, name):
    from db.accounts import Accounts

    monkeypatch.setenv("IMAP_ALLOW_PRIVATE_HOSTS", "false")
    accounts = Accounts(db)
    accounts.create_account(name, PASSWORD)
    app = AppTest.from_file(str(ROOT / "pages" / "import_mail.py"), default_timeout=120)
    app.session_state["auth_token"] = accounts.sign_in(name, PASSWORD).token
    app.run()
    app.text_input(key="imap_host").input("localhost")
    app.text_input(key="imap_user").input("sam")
    app.text_input(key="imap_password").input("hunter2-secret")
    next(b for b in app.button if b.label == "Import from IMAP").click().run()
    assert not app.exception
    (error,) = [e.value.replace("\\", "") for e in app.error]  # an admin's detail is shown escaped
    if name == "boss":
        assert error.startswith("localhost resolves to 127.0.0.1, this machine itself (loopback)")
        assert "IMAP_ALLOW_PRIVATE_HOSTS" in error
    else:
        assert error == ("localhost:993 is not an IMAP server this app may connect to: imports reach only "
                         "servers on the internet, not this machine or its private network.")
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM mail_imports")).scalar_one() == 0
