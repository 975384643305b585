"""Shared clients for the Streamlit pages, created once per server process (`st.cache_resource`).

Pages call these and lay out what `semcache/` and `mail/` return; nothing here holds per-user state.
"""

from __future__ import annotations

import streamlit as st
from sqlalchemy import Engine

from semcache import SemanticCache
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


_MARKDOWN_SPECIALS = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()#+-.!<>|~$:"})


def md(text: str) -> str:
    """Text shown through st.markdown exactly as written: no markup, links, images or HTML from
    mail or from other users' topics."""
    return " ".join(str(text).split()).translate(_MARKDOWN_SPECIALS)


def settings() -> Settings:
    return get_settings()


@st.cache_resource(show_spinner="Starting the database…")
def engine() -> Engine:
    import services

    return services.build_engine(settings())


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


@st.cache_resource(show_spinner=False)
def accounts():
    """Accounts for AUTH_MODE=password (see `db.accounts`)."""
    from db.accounts import Accounts

    return Accounts(engine(), session_hours=settings().session_hours)


def owner() -> str:
    """Whose mail this session sees: the signed-in user (see `auth`); a page run without one
    shows a sign-in prompt and stops."""
    import auth

    return auth.require_user().name
