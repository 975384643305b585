"""Shared clients for the Streamlit pages, created once per server process (`st.cache_resource`).

Pages call these and lay out what `semcache/` and `mail/` return; nothing here holds per-user state.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import streamlit as st
from sqlalchemy import Engine

from markup import markdown_text
from semcache import CacheAdmin, SemanticCache, StorageError
from semcache.interfaces import Embedder
from settings import Settings, get_settings


def _leave_old_multipage_mode() -> None:
    """When a server's very first request names a page (a bookmark after a restart), Streamlit
    runs that file from pages/ on its own, in its old multipage mode, because a pages/ folder sits
    beside app.py: the app's menu and layout never load. Every page imports this module, so the
    first such run switches that mode off and starts over through app.py's navigation."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_old_multipage_mode()


md = markdown_text
"""Text shown through Streamlit's Markdown (st.markdown, captions, messages, labels) exactly as
written: no markup, links, images, icons or HTML from mail or from other users' topics."""


def settings() -> Settings:
    return get_settings()


@st.cache_resource(show_spinner="Starting the database…")
def engine() -> Engine:
    import services

    return services.build_engine(settings())


RECONNECT_SECONDS = 3


def database_down(exc: BaseException | None = None, *, note: str = "") -> None:
    """What a page shows in place of what needed the database when it does not answer: that it
    is reconnecting, a button to try at once, and a retry by itself every few seconds (the page
    runs again as soon as the database answers). The page's run ends here."""
    import time

    from db.engine import database_answers

    embedded = settings().database_url is None
    st.warning(("The database is restarting; reconnecting…" if embedded
                else "The database is not answering; reconnecting…") + (f" {note}" if note else ""),
               icon=":material/sync:")
    reason = str(getattr(exc, "orig", None) or exc or "").strip().splitlines()
    if reason:  # it names the server's socket path or host: for the log, not the page
        logging.getLogger(__name__).warning("The database is not answering: %s", reason[0][:300])
    st.caption(f"Trying again every {RECONNECT_SECONDS} seconds.")

    @st.fragment(run_every=RECONNECT_SECONDS)
    def reconnect() -> None:
        # At most one automatic rerun per interval, even if the page keeps failing once connected.
        if time.monotonic() - st.session_state.get("_database_retried_at", 0.0) < RECONNECT_SECONDS:
            return
        try:
            answers = database_answers(engine())
        except Exception:  # the engine itself could not be built: still down
            answers = False
        if answers:
            st.session_state["_database_retried_at"] = time.monotonic()
            st.rerun()

    if not embedded:  # a remote server that does not answer takes its connect timeout: not twice per run
        st.session_state["_database_retried_at"] = time.monotonic()
    reconnect()
    st.button("Try again now", icon=":material/refresh:", key="database_retry")
    st.stop()


def service_down(exc: BaseException) -> None:
    """A page's answer to an error in `semcache.report.SERVICE_ERRORS`: a database that does not
    answer is reconnected to (`database_down`); another service's outage is explained."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    from app_text import explain

    if isinstance(exc, StorageError) and exc.unavailable:
        database_down(exc.__cause__)
    if isinstance(exc, (OperationalError, InterfaceError)):
        database_down(exc)
    st.error(explain(exc), icon=":material/cloud_off:")


@st.cache_resource(show_spinner="Loading the embedding model…")
def embedder() -> Embedder:
    import services

    model = services.build_embedder(settings())
    model.embed(["warm up"])
    return model


@st.cache_resource(show_spinner="Preparing the image cache…")
def cache() -> SemanticCache:
    import services

    return services.build_cache(settings(), engine=engine(), embedder=embedder())


def cache_admin() -> CacheAdmin:
    """The operator's side of the shared cache: its entries, verdicts and pictures."""
    return CacheAdmin(cache())


def finder():
    """The Search page's service (see `finder`), on the shared engine, model and cache."""
    from finder import Finder
    from semcache import EmbeddingError

    try:
        model = embedder()
    except EmbeddingError as exc:  # the words alone still find mail
        return Finder(engine(), None, None, embedding_error=exc)
    return Finder(engine(), model, cache())


@st.cache_resource(show_spinner=False)
def picture_pool() -> ThreadPoolExecutor:
    """Threads that look up (or make) pictures off the pages' script runs, shared by every
    session: a slow picture never holds up the results, a click or the next page."""
    return ThreadPoolExecutor(max_workers=settings().picture_workers, thread_name_prefix="picture")


@st.cache_resource(show_spinner=False)
def accounts():
    """Accounts for AUTH_MODE=password (see `db.accounts`); on first start, the first admin's
    account from ADMIN_PASSWORD_FILE."""
    from db.accounts import AccountError, Accounts

    s = settings()
    accounts = Accounts(engine(), session_hours=s.session_hours, admins=s.admins,
                        signups_per_hour=s.signups_per_hour, signups_per_client_per_hour=s.signups_per_ip_per_hour)
    first_admin = next((name.strip() for name in s.admin_users.split(",") if name.strip()), None)
    if s.auth_mode == "password" and s.admin_password_file and first_admin:
        try:
            if accounts.create_admin_from_file(first_admin, s.admin_password_file):
                logging.getLogger(__name__).warning("Created the administrator %s from ADMIN_PASSWORD_FILE.",
                                                    first_admin)
        except AccountError as exc:
            logging.getLogger(__name__).error("The administrator %s was not created: %s", first_admin, exc)
    return accounts


@st.cache_resource(show_spinner=False)
def import_queue():
    """The background imports (`mail.jobs`): the pages enqueue and read them; workers run them."""
    import services

    return services.build_import_queue(settings(), engine())
