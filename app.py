"""Streamlit entry point: the navigation over the app's pages."""

import streamlit as st

st.set_page_config(page_title="Mail search", page_icon="✉️", layout="wide")

pages = [
    st.Page("pages/search.py", title="Search", icon="🔎", default=True),
    st.Page("pages/import_mail.py", title="Import", icon="📥"),
    st.Page("pages/cache_settings.py", title="Settings", icon="🎛️"),
    st.Page("pages/savings.py", title="Savings", icon="💰"),
]
st.navigation(pages).run()
