"""Secrets never reach a log line or a page: the OpenAI API key, an IMAP password and the
password in DATABASE_URL, while the app searches, while OpenAI fails (a fake OpenAI on loopback
that even echoes the key back in its errors), while an IMAP login is refused by a real Dovecot,
and while the database cannot be reached.

Everything is captured: every logger at DEBUG (Streamlit's own loggers do not propagate, so the
capture handler is put on them too), the process's stdout and stderr, the pages' elements as
Streamlit would send them to the browser, and the cache's event log (the Settings page shows it).
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from streamlit.testing.v1 import AppTest

from fake_openai import FakeOpenAI
from mail.store import import_messages
from semcache import EmbeddingError, GenerationError
from semcache.embedders import OpenAIEmbedder
from semcache.openai_images import OpenAIImageGenerator
from helpers import button, fill_imap, mail, page_text, raw
from conftest import picture_shown

ROOT = Path(__file__).resolve().parent.parent
SEARCH = str(ROOT / "pages" / "search.py")
IMPORT = str(ROOT / "pages" / "import_mail.py")
SETTINGS = str(ROOT / "pages" / "cache_settings.py")
OWNER = "secret-keeper"
LOGGERS = ("", "streamlit", "openai", "httpx", "httpcore", "sqlalchemy", "sqlalchemy.engine", "alembic",
           "urllib3", "mail", "semcache", "db")


@pytest.fixture
def everything_logged(caplog):
    """Every log record at DEBUG, from loggers that propagate to the root and from those that do not."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    detached = [logger for logger in logging.root.manager.loggerDict.values()
                if isinstance(logger, logging.Logger) and not logger.propagate]
    for logger in detached:
        logger.addHandler(caplog.handler)
    yield caplog
    for logger in detached:
        logger.removeHandler(caplog.handler)


def run(path: str) -> AppTest:
    app = AppTest.from_file(path, default_timeout=180).run()
    assert not app.exception, app.exception
    return app


def shown(app: AppTest) -> str:
    """What the page sends to the browser, dataframes' cells included."""
    return page_text(app) + "\n".join(frame.value.to_string() for frame in app.dataframe)


def leaks(secret: str, *texts: str) -> list[str]:
    """Which of ``texts`` hold the secret, or its random tail (a partly masked echo)."""
    return [t[max(0, t.find(part) - 200):t.find(part) + 200]
            for t in texts for part in (secret, secret[-12:]) if part in t]


def test_no_secret_in_logs_or_pages(app_env, db, pg_url, local_embedder, imap_server, monkeypatch,
                                    everything_logged, capfd, run_imports):
    api_key = f"sk-proj-{secrets.token_hex(24)}"
    db_password = f"pg-{secrets.token_hex(12)}"
    wrong_imap_password = f"Wr0ng-{secrets.token_hex(12)}"
    database_url = make_url(pg_url).set(password=db_password).render_as_string(hide_password=False)
    import_messages(db, OWNER, raw([mail("Invoice 2291", "Please find the invoice for March."),
                                    mail("Dog walking rota", "Who walks the dog on Tuesday?"),
                                    mail("Trip to Paris", "Train tickets to Paris are booked.")]),
                    embedder=local_embedder)

    pages = []
    with FakeOpenAI(api_key=api_key) as openai_server:
        for name, value in {"DEFAULT_OWNER": OWNER, "DATABASE_URL": database_url, "OPENAI_API_KEY": api_key,
                            "OPENAI_BASE_URL": openai_server.base_url, "EMBEDDING_PROVIDER": "local",
                            "IMAGE_PROVIDER": "openai", "OPENAI_MAX_RETRIES": "0"}.items():
            monkeypatch.setenv(name, value)
        images = "/v1/images/generations"
        openai_server.fail_next(401, path=images, message=f"Incorrect API key provided: {api_key}.")
        openai_server.fail_next(400, path=images, message=f"Your request with key {api_key} was refused.")
        openai_server.fail_next(500, path=images, message=f"Upstream trouble (key={api_key}).")

        search = run(SEARCH)
        for query in ("invoice", "dog", "paris", "trip"):
            picture_shown(search.text_input(key="q").input(query).run())
            assert not search.exception and not search.error, [e.value for e in search.error]
            pages.append(shown(search))
        captions = "\n".join(c.value for c in search.caption)
        assert "Generated ($0.04)" in captions  # the fourth picture: OpenAI answered again
        assert len(openai_server.requests_to(images)) == 4
        failures = pages[0] + pages[1] + pages[2]
        assert "OpenAI rejected the API key (HTTP 401)" in failures and "No picture this time" in failures

        pages.append(shown(run(SETTINGS)))  # recent lookups, with the failures' sentences

    imports = run(IMPORT)
    fill_imap(imports, imap_server, wrong_imap_password, "INBOX")
    button(imports, "Import from IMAP").click().run()
    pages.append(shown(imports))
    run_imports()  # the import runs in a worker loop here, and fails at the login
    imports = run(IMPORT)
    assert not imports.exception and "refused the login" in imports.error[0].value
    pages.append(shown(imports))
    with db.connect() as conn:
        pages.append("\n".join(str(tuple(row)) for row in conn.execute(text(
            "SELECT * FROM procrastinate_jobs"))))
        pages.append("\n".join(str(tuple(row)) for row in conn.execute(text("SELECT * FROM mail_imports"))))

    with db.connect() as conn:
        events = "\n".join(str(tuple(row)) for row in conn.execute(text("SELECT * FROM semcache_events")))
    assert "HTTP 401" in events
    out, err = capfd.readouterr()
    logs = everything_logged.text
    assert "images/generations" in logs, "the log capture saw OpenAI's requests"
    for secret in (api_key, db_password, wrong_imap_password, imap_server.password):
        assert not leaks(secret, logs, out, err, events, *pages)


def test_no_database_password_when_the_database_is_down(app_env, monkeypatch, everything_logged, capfd):
    password = f"pg-{secrets.token_hex(12)}"
    monkeypatch.setenv("DATABASE_URL", f"postgresql://mailapp:{password}@127.0.0.1:1/mail")
    monkeypatch.setenv("DEFAULT_OWNER", OWNER)

    search = run(SEARCH)
    assert search.warning[0].value == "The database is not answering; reconnecting…"
    imports = run(IMPORT)
    imports.text_input(key="import_path").input(str(ROOT / "README.md")).run()
    button(imports, "Import from the path").click().run()
    assert not imports.exception and imports.error[0].value.startswith("The database could not be reached")
    out, err = capfd.readouterr()
    assert not leaks(password, everything_logged.text, out, err, shown(search), shown(imports))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500])
def test_a_failed_openai_call_carries_no_key_even_in_its_traceback(status):
    """What a log would print for it (``log.exception``, an uncaught error on a page or in a
    command line) holds no key, even from a server that echoes the key in its errors."""
    api_key = f"sk-proj-{secrets.token_hex(24)}"
    with FakeOpenAI(api_key=api_key) as server:
        server.fail_next(status, times=2, message=f"Your key {api_key} cannot do that.")
        calls = [(GenerationError, OpenAIImageGenerator(api_key, base_url=server.base_url, max_retries=0).generate),
                 (EmbeddingError, lambda topic: OpenAIEmbedder(api_key, base_url=server.base_url,
                                                               max_retries=0).embed([topic]))]
        for error, call in calls:
            with pytest.raises(error) as failed:
                call("dog")
            printed = "".join(traceback.format_exception(failed.value))
            assert f"HTTP {status}" in printed and not leaks(api_key, printed), printed


@pytest.fixture
def openai_embeddings(app_env, monkeypatch):
    """The app with OpenAI embeddings from a fake server; the app's shared model is put back after."""
    import app_state

    api_key = f"sk-proj-{secrets.token_hex(24)}"
    with FakeOpenAI(api_key=api_key) as server:
        for name, value in {"DEFAULT_OWNER": OWNER, "OPENAI_API_KEY": api_key, "OPENAI_BASE_URL": server.base_url,
                            "EMBEDDING_PROVIDER": "openai", "IMAGE_PROVIDER": "offline",
                            "OPENAI_MAX_RETRIES": "0"}.items():
            monkeypatch.setenv(name, value)
        app_state.embedder.clear()
        yield server
    app_state.embedder.clear()


def test_no_key_when_openai_embeddings_fail_on_the_search_page(openai_embeddings, db, local_embedder,
                                                                everything_logged, capfd):
    server = openai_embeddings
    import_messages(db, OWNER, raw([mail("Invoice 2291", "Please find the invoice for March.")]),
                    embedder=local_embedder)
    search = run(SEARCH)
    server.fail_next(403, times=20, path="/v1/embeddings", message=f"Key {server.api_key} may not embed.")
    search.text_input(key="q").input("invoice").run()
    assert not search.exception, search.exception
    page = shown(search)
    assert "Invoice 2291" in page and "HTTP 403" in page  # found by its words; the failure said as a sentence
    out, err = capfd.readouterr()
    assert not leaks(server.api_key, everything_logged.text, out, err, page)


def test_command_line_failures_are_sentences_without_secrets(engine, pg_url, fake_openai, tmp_path):
    db_password = f"pg-{secrets.token_hex(12)}"
    fake_openai.fail_next(403, times=20, message=f"Key {fake_openai.api_key} may not embed.")
    env = {**os.environ, "DATABASE_URL": make_url(pg_url).set(password=db_password).render_as_string(
               hide_password=False), "DATA_DIR": str(tmp_path), "OPENAI_API_KEY": fake_openai.api_key,
           "OPENAI_BASE_URL": fake_openai.base_url, "EMBEDDING_PROVIDER": "openai", "OPENAI_MAX_RETRIES": "0",
           "DEFAULT_OWNER": OWNER}
    done = subprocess.run([sys.executable, "-m", "mail", "search", "invoice"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.startswith("error: ") and "HTTP 403" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    for secret in (fake_openai.api_key, db_password):
        assert not leaks(secret, done.stdout, done.stderr)
