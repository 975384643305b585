"""Shared clients for the Streamlit pages, created once per server process."""

from __future__ import annotations

import streamlit as st

from semcache import SemanticCache


@st.cache_resource(show_spinner="Starting the database and loading the embedding model…")
def cache() -> SemanticCache:
    import services
    from settings import get_settings

    return services.build_cache(get_settings())
