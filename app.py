"""Streamlit entry point: who is signed in (see `auth`), and the navigation over the pages they
may open. Settings and Savings show every user's topics, so only admins get them."""

import streamlit as st

import auth
import import_views

st.set_page_config(page_title="Mail search", page_icon="✉️", layout="wide")

user = auth.current_user()
if user is None:
    st.navigation([st.Page(auth.sign_in_page, title="Sign in", icon="🔑", url_path="sign-in")]).run()
else:
    pages = [
        st.Page("pages/search.py", title="Search", icon="🔎", default=True),
        st.Page("pages/import_mail.py", title="Import", icon="📥"),
    ]
    if user.is_admin:
        pages += [
            st.Page("pages/cache_settings.py", title="Settings", icon="🎛️"),
            st.Page("pages/savings.py", title="Savings", icon="💰"),
        ]
    auth.sidebar(user)
    import_views.sidebar_status(user.name)  # a running import, live, on every page
    st.navigation(pages).run()
