"""Streamlit entry point: who is signed in (see `auth`), and the navigation over the pages they
may open. Settings and Savings show every user's topics, so only admins get them.

An error no page expected ends the page with a sentence and a reference; the server's log has
the traceback under that reference. Nobody sees a traceback, SQL or a server path (admins see
the exception's type); `.streamlit/config.toml` keeps Streamlit's own error display as bare."""

import logging
import secrets

import streamlit as st
from streamlit.errors import FragmentHandledException

import auth
import import_views

log = logging.getLogger("mailsearch.app")


def unexpected_error(error: Exception, *, admin: bool) -> None:
    reference = secrets.token_hex(4)
    log.error("Unexpected error on a page, reference %s", reference, exc_info=error)
    st.error("Something went wrong on this page. Try again in a moment; if it keeps happening, give "
             f"the administrator the reference **{reference}**.", icon="🚫")
    if admin:
        st.caption(f"{type(error).__module__}.{type(error).__qualname__}: the traceback is in the "
                   f"server's log under {reference}.")


def close_menu_on_a_phone(url_path: str) -> None:
    """On a phone the menu covers the page: once a page is chosen from it, fold it away (as on a
    laptop, where it stays beside the page, nothing changes). The page's path is in the script,
    so it runs once per page opened."""
    st.sidebar.html(
        f"<script>/* page {url_path} */ if (window.innerWidth < 640) {{"
        " const menu = document.querySelector('[data-testid=\"stSidebar\"]');"
        " if (menu && menu.getBoundingClientRect().right > 0)"
        " document.querySelector('[data-testid=\"stSidebarCollapseButton\"] button')?.click(); }</script>",
        unsafe_allow_javascript=True)


st.set_page_config(page_title="Mail search", page_icon="✉️", layout="wide")

user = None
try:
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
        page = st.navigation(pages)
        close_menu_on_a_phone(page.url_path)
        page.run()
except FragmentHandledException:
    raise  # a fragment's error, already shown in its place (as bare as showErrorDetails says)
except Exception as error:  # st.stop, st.rerun and st.switch_page are not Exceptions: they pass
    unexpected_error(error, admin=user is not None and user.is_admin)
