"""Streamlit entry point: the navigation over the app's pages."""

import streamlit as st

st.set_page_config(page_title="Mail search", page_icon="✉️", layout="wide")

pages = [
    st.Page("pages/topic_image.py", title="Topic image", icon="🖼️", default=True),
]
st.navigation(pages).run()
