"""The app as served: Streamlit's `st.App` running `app.py`, with the routes that set and clear
the password sign-in's HttpOnly cookie (`session_cookie`). ``streamlit run asgi.py`` (what
``make run`` does) finds the ``app`` below and serves it; ``uvicorn asgi:app`` works too.
``streamlit run app.py`` still runs the app, only without the cookie: a password sign-in then
lasts as long as its browser tab."""

import streamlit as st

import session_cookie

app = st.App("app.py", routes=session_cookie.routes())
