"""Shared clients for the Streamlit pages, created once per server process (`st.cache_resource`).

Pages call these and lay out what `semcache/` and `mail/` return; nothing here holds per-user state.
"""

from __future__ import annotations

import streamlit as st
from sqlalchemy import Engine

from semcache import SemanticCache
from semcache.interfaces import Embedder
from settings import Settings, get_settings


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


def owner() -> str:
    """Whose mail this session sees. One local user for now (accounts come later)."""
    return settings().default_owner
