"""Import: bring mail in from an upload, a path on the server or an IMAP account (or load the demo
mailbox), watch it go, and see what was imported, already there, or could not be read and why."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePath

import streamlit as st
from streamlit.errors import StreamlitAPIException

import app_state
import auth
from mail import importing
from mail.types import ImportProgress, ImportSummary, MailError

OUTCOME = "import_outcome"
SECURITY = {"ssl": "SSL/TLS", "starttls": "STARTTLS", "plain": "Plain (localhost only)"}

settings = app_state.settings()
user = auth.require_user()
owner = user.name


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _progress_view() -> Callable[[ImportProgress], None]:
    """A progress bar and a caption under it; the returned callback updates both."""
    bar = st.progress(0.0, text="Opening the mailbox…")
    note = st.empty()

    def show(p: ImportProgress) -> None:
        if p.total:
            bar.progress(min(p.done / p.total, 1.0), text=f"{p.done:,} of {p.total:,} messages")
        else:
            bar.progress(1.0, text=f"{p.done:,} messages")
        eta = f" · about {_duration(p.eta_seconds)} left" if p.eta_seconds else ""
        note.caption(f"{p.rate:,.0f} messages a second{eta}")

    return show


def _run(source: str, start: Callable[..., ImportSummary]) -> None:
    """Run ``start(engine, embedder, progress)`` inside a status box; keep what came of it."""
    with st.status(f"Importing {source}…", expanded=True) as status:
        progress = _progress_view()
        try:
            with importing.reporting_outages():
                engine, embedder = app_state.engine(), app_state.embedder()
            summary = start(engine, embedder, progress)
        except MailError as error:
            status.update(label=f"{source} was not imported", state="error", expanded=False)
            st.session_state[OUTCOME] = {"source": source, "error": str(error)}
            return
        status.update(label=f"Imported {source}: {summary.imported:,} new messages",
                      state="complete", expanded=False)
    st.session_state[OUTCOME] = {"source": source, "summary": summary}


def _search_link() -> None:
    try:
        st.page_link("pages/search.py", label="Search your mail", icon="🔎")
    except StreamlitAPIException:  # the page runs on its own, outside app.py's navigation
        st.caption("Open the Search page to find them.")


def _show_summary(source: str, summary: ImportSummary) -> None:
    st.subheader(f"From {source}")
    imported, duplicates, failed = st.columns(3)
    imported.metric("Imported", f"{summary.imported:,}", border=True)
    duplicates.metric("Already here", f"{summary.duplicates:,}", border=True,
                      help="Duplicates: messages this mailbox already had (same Message-ID), left as they were.")
    failed.metric("Failed", f"{summary.failed:,}", border=True,
                  help="Messages that could not be read or were too large; the reasons are listed below.")
    read = summary.imported + summary.duplicates + summary.failed
    st.caption(f"{read:,} messages read in {_duration(summary.seconds)}"
               + ("" if summary.embedded else " · not embedded: found by words only, not by meaning"))
    if summary.failures:
        with st.expander(f"Why {summary.failed:,} {'message' if summary.failed == 1 else 'messages'} failed"):
            st.dataframe([{"Message": where, "Reason": reason} for where, reason in summary.failures],
                         hide_index=True, width="stretch")
    if read == 0:
        st.info("There were no messages to import (an IMAP account imports only mail that arrived "
                "since its last import).")
    elif summary.imported == 0 and summary.duplicates:
        st.info("Nothing new: every message that could be read was already here.")
    if summary.imported or summary.duplicates:
        _search_link()


st.title("Import mail")
st.caption(f"Messages are filed for **{owner}**. Importing the same mail again adds nothing: "
           "each message is recognised by its Message-ID.")

# Reading any file the server can reach is for admins (and the one local user) only.
names = ["⬆️ Upload files"] + (["🗂️ Path on the server"] if user.is_admin else []) + ["📬 IMAP account"]
tabs = dict(zip(names, st.tabs(names)))
upload_tab, imap_tab = tabs["⬆️ Upload files"], tabs["📬 IMAP account"]
outcome_area = st.container()

with upload_tab:
    files = st.file_uploader(
        "Mailbox files", accept_multiple_files=True, max_upload_size=settings.max_upload_mb, key="upload_files",
        help="Recognised by content: an mbox file (any name), .eml messages, or a .zip of either or of a Maildir.")
    st.caption(f"mbox, .eml (several at once) or .zip, up to {settings.max_upload_mb} MB each. "
               f"Messages over {settings.max_message_mb} MB are skipped and listed.")
    if st.button("Import the files", type="primary", icon="📥", disabled=not files, key="upload_go"):
        label = files[0].name if len(files) == 1 else f"{len(files)} files"
        uploads = [(file.name, file.getvalue()) for file in files]
        _run(label, lambda engine, embedder, progress: importing.import_uploads(
            engine, owner, uploads, embedder=embedder, progress=progress,
            max_message_mb=settings.max_message_mb, max_upload_mb=settings.max_upload_mb))

if user.is_admin:
    with tabs["🗂️ Path on the server"]:
        with st.form("path_form", border=False):
            path = st.text_input("Path on the server", key="import_path", placeholder="/srv/mail/archive.mbox")
            st.caption("An mbox file, a Maildir, a folder of .eml files or a .zip of them, as the machine "
                       "running this app sees it.")
            path_go = st.form_submit_button("Import from the path", type="primary", icon="📥")
        if path_go:
            _run(PurePath(path.strip()).name or "the path", lambda engine, embedder, progress: importing.import_path(
                engine, owner, path, embedder=embedder, progress=progress, max_message_mb=settings.max_message_mb))

with imap_tab:
    host_col, port_col, security_col = st.columns([4, 2, 4])
    host = host_col.text_input("Server", key="imap_host", placeholder="imap.example.com")
    port = port_col.number_input("Port", key="imap_port", value=None, min_value=1, max_value=65535, step=1,
                                 placeholder="usual", help="Empty: 993 for SSL/TLS, 143 otherwise.")
    security = security_col.radio("Security", list(SECURITY), format_func=SECURITY.get, horizontal=True,
                                  key="imap_security",
                                  help="Plain sends the password unencrypted and is only allowed to this machine.")
    user_col, folders_col = st.columns(2)
    user = user_col.text_input("User name", key="imap_user", autocomplete="username")
    folders = folders_col.text_input("Folders", value="INBOX", key="imap_folders", help="Comma-separated, e.g. INBOX, Archive")
    # Cleared on submit: the password lives only for the run that uses it.
    with st.form("imap_form", clear_on_submit=True, border=False):
        password = st.text_input("Password", type="password", key="imap_password", autocomplete="current-password")
        imap_go = st.form_submit_button("Import from IMAP", type="primary", icon="📥")
    st.caption("Folders are opened read-only: nothing is marked as read. A later import fetches only "
               "new mail. The password is used to log in and is not stored.")
    if imap_go:
        _run(f"{user.strip()}@{host.strip()}" if user.strip() else host.strip() or "IMAP",
             lambda engine, embedder, progress: importing.import_imap(
                 engine, owner, host=host, port=port, security=security, user=user, password=password,
                 folders=folders, embedder=embedder, progress=progress, max_message_mb=settings.max_message_mb))
        del password
        st.session_state.pop("imap_password", None)

st.divider()
demo_text, demo_button = st.columns([3, 1], vertical_alignment="center")
demo_text.markdown("**No mailbox at hand?** Load the demo mailbox: 300 made-up messages about pets, "
                   "trips, invoices and family news, to try searching.")
if demo_button.button("Load the demo mailbox", icon="🧪", key="demo_go", width="stretch"):
    _run("the demo mailbox", lambda engine, embedder, progress: importing.load_demo(
        engine, owner, settings.data_dir, embedder=embedder, progress=progress))

outcome = st.session_state.get(OUTCOME)
if outcome:
    with outcome_area:
        if "error" in outcome:
            st.error(outcome["error"], icon="🚫")
        else:
            _show_summary(outcome["source"], outcome["summary"])
