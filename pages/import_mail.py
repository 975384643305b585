"""Import: bring mail in from an upload, a path on the server or an IMAP account (or load the demo
mailbox). Each becomes a background import, run by a worker process; the page lists the user's
imports with their live progress, what came of each (imported, already there, failed and why),
and a Cancel button. It is all read from the database: a reload, a second tab or another
browser shows the same."""

from __future__ import annotations

import logging

import streamlit as st
from streamlit.errors import StreamlitAPIException

import app_state
import auth
import import_views
from mail.jobs import ImportJob
from mail.sources import error_detail
from mail.types import ImportSummary, MailError

SECURITY = {"ssl": "SSL/TLS", "starttls": "STARTTLS", "plain": "Plain (localhost only)"}
STATUS = {"queued": "⏳ Queued", "running": "📥 Importing", "done": "✅ Done", "failed": "🚫 Failed",
          "cancelled": "✋ Cancelled"}
_md = app_state.md

settings = app_state.settings()
user = auth.require_user()
owner = user.name


def _queue(action):
    """Run ``action(queue)``; a refusal or an outage is shown as its sentence. True when queued."""
    try:
        with import_views.outages():
            action(import_views.queue())
    except MailError as error:
        # An IMAP server's own words (its reply, the address its name has) are for admins only.
        detail = error_detail(error) if user.is_admin else str(error)
        st.error(_md(detail), icon="🚫")
        return False
    except Exception:  # a bug must not show a traceback; the log has the whole story
        logging.getLogger("mail.import_page").exception("Queueing an import failed")
        st.error("The import could not be queued because of an unexpected error, and nothing was "
                 "imported. Try again; if it happens again, tell the administrator.", icon="🚫")
        return False
    st.toast("Queued. It runs in the background: you may leave this page.", icon="📥")
    return True


def _search_link() -> None:
    try:
        st.page_link("pages/search.py", label="Search your mail", icon="🔎")
    except StreamlitAPIException:  # the page runs on its own, outside app.py's navigation
        st.caption("Open the Search page to find them.")


def _show_summary(source: str, summary: ImportSummary) -> None:
    st.subheader(f"From {_md(source)}")
    imported, duplicates, failed = st.columns(3)
    imported.metric("Imported", f"{summary.imported:,}", border=True)
    duplicates.metric("Already here", f"{summary.duplicates:,}", border=True,
                      help="Duplicates: messages this mailbox already had (same Message-ID), left as they were.")
    failed.metric("Failed", f"{summary.failed:,}", border=True,
                  help="Messages that could not be read or were too large; the reasons are listed below.")
    read = summary.imported + summary.duplicates + summary.failed
    st.caption(f"{read:,} messages read in {import_views.duration(summary.seconds)}"
               + ("" if summary.embedded else " · not embedded: found by words only, not by meaning"))
    if summary.failures:
        with st.expander(f"Why {summary.failed:,} {'message' if summary.failed == 1 else 'messages'} failed"):
            st.dataframe([{"Message": where, "Reason": reason} for where, reason in summary.failures],
                         hide_index=True, width="stretch")
            if len(summary.failures) < summary.failed:
                st.caption(f"The first {len(summary.failures):,} reasons are listed.")
    if summary.cancelled:
        st.info("Cancelled: the messages imported before it stopped are kept; importing the same mail "
                "again adds only the rest.")
    elif read == 0:
        st.info("There were no messages to import (an IMAP account imports only mail that arrived "
                "since its last import).")
    elif summary.imported == 0 and summary.duplicates:
        st.info("Nothing new: every message that could be read was already here.")
    if summary.imported or summary.duplicates:
        _search_link()


def _show_active(job: ImportJob, ahead: ImportJob | None, workers: int) -> None:
    with st.container(border=True):
        title, cancel = st.columns([5, 1], vertical_alignment="center")
        title.markdown(f"**{STATUS[job.status]} {_md(job.label)}**")
        if not job.cancel_requested:
            cancel.button("Cancel", key=f"cancel_{job.id}", icon="✋", width="stretch",
                          on_click=_cancel, args=(job.id,))
        if job.status == "queued":
            st.caption(import_views.waiting_note(job, ahead, workers))
        else:
            import_views.progress(job)


def _cancel(import_id: int) -> None:
    try:
        with import_views.outages():
            cancelled = import_views.queue().cancel(owner, import_id)
        if not cancelled:
            st.toast("That import has already ended.", icon="ℹ️")
    except MailError as error:
        st.toast(str(error), icon="🚫")


def _show_finished(job: ImportJob) -> None:
    if job.status == "failed":
        st.subheader(f"{_md(job.label)} was not imported")
        st.error(_md(job.error) if job.error else "The import failed.", icon="🚫")
        if job.imported or job.duplicates or job.failed:
            st.caption(f"Before it stopped: {job.imported:,} imported, {job.duplicates:,} already here, "
                       f"{job.failed:,} failed; importing again adds only the rest.")
    else:
        _show_summary(job.label, job.summary)


def _earlier(jobs: list[ImportJob]) -> None:
    with st.expander(f"Earlier imports ({len(jobs)})"):
        st.dataframe([{"Import": job.label, "Status": STATUS[job.status].split(" ", 1)[1],
                       "Imported": job.imported, "Already here": job.duplicates, "Failed": job.failed,
                       "When": job.created_at, "Why it failed": job.error or ""} for job in jobs],
                     hide_index=True, width="stretch",
                     column_config={"When": st.column_config.DatetimeColumn(format="distance")})


def _imports() -> None:
    """The user's imports: the unfinished ones live, the latest finished one in full."""
    try:
        with import_views.outages():
            queue = import_views.queue()
            jobs = queue.imports(owner)
            active = [job for job in jobs if job.active]
            workers = queue.workers_alive() if any(job.status == "queued" for job in active) else 1
    except MailError as error:
        st.error(str(error), icon="🚫")
        return
    if st.session_state.get("_imports_were_active") and not active:
        st.session_state["_imports_were_active"] = False
        st.rerun(scope="app")  # the last one ended: show its summary, and stop polling
    st.session_state["_imports_were_active"] = bool(active)
    running = {job.id for job in active if job.status == "running"}
    for job in sorted(active, key=lambda job: job.id):
        earlier = [other for other in active if other.id < job.id]
        ahead = next((other for other in earlier if other.id in running), earlier[-1] if earlier else None)
        _show_active(job, ahead, workers)
    finished = [job for job in jobs if not job.active]
    if finished:
        _show_finished(finished[0])
    if finished[1:]:
        _earlier(finished[1:])


st.title("Import mail")
st.caption(f"Messages are filed for **{_md(owner)}**. Importing the same mail again adds nothing: "
           "each message is recognised by its Message-ID. Imports run in the background: you may "
           "leave this page or close the browser, and come back to see how far they got.")

# Reading any file the server can reach is for admins (and the one local user) only.
names = ["⬆️ Upload files"] + (["🗂️ Path on the server"] if user.is_admin else []) + ["📬 IMAP account"]
tabs = dict(zip(names, st.tabs(names)))
upload_tab, imap_tab = tabs["⬆️ Upload files"], tabs["📬 IMAP account"]

with upload_tab:
    files = st.file_uploader(
        "Mailbox files", accept_multiple_files=True, max_upload_size=settings.max_upload_mb, key="upload_files",
        help="Recognised by content: an mbox file (any name), .eml messages, or a .zip of either or of a Maildir.")
    st.caption(f"mbox, .eml (several at once) or .zip, up to {settings.max_upload_mb} MB each. "
               f"Messages over {settings.max_message_mb} MB are skipped and listed.")
    if st.button("Import the files", type="primary", icon="📥", disabled=not files, key="upload_go"):
        uploads = [(file.name, file.getvalue()) for file in files]
        _queue(lambda queue: queue.enqueue_uploads(owner, uploads))
        del uploads

if user.is_admin:
    with tabs["🗂️ Path on the server"]:
        with st.form("path_form", border=False):
            path = st.text_input("Path on the server", key="import_path", placeholder="/srv/mail/archive.mbox")
            st.caption("An mbox file, a Maildir, a folder of .eml files or a .zip of them, as the machines "
                       "running the import workers see it.")
            path_go = st.form_submit_button("Import from the path", type="primary", icon="📥")
        if path_go:
            _queue(lambda queue: queue.enqueue_path(owner, path))

with imap_tab:
    host_col, port_col, security_col = st.columns([4, 2, 4])
    host = host_col.text_input("Server", key="imap_host", placeholder="imap.example.com")
    port = port_col.number_input("Port", key="imap_port", value=None, min_value=1, max_value=65535, step=1,
                                 placeholder="usual", help="Empty: 993 for SSL/TLS, 143 otherwise.")
    security = security_col.radio("Security", list(SECURITY), format_func=SECURITY.get, horizontal=True,
                                  key="imap_security",
                                  help="Plain sends the password unencrypted and is only allowed to this machine.")
    user_col, folders_col = st.columns(2)
    imap_user = user_col.text_input("User name", key="imap_user", autocomplete="username")
    folders = folders_col.text_input("Folders", value="INBOX", key="imap_folders", help="Comma-separated, e.g. INBOX, Archive")
    # Cleared on submit: the password lives only for the run that queues the import.
    with st.form("imap_form", clear_on_submit=True, border=False):
        password = st.text_input("Password", type="password", key="imap_password", autocomplete="current-password")
        imap_go = st.form_submit_button("Import from IMAP", type="primary", icon="📥")
    st.caption("Folders are opened read-only: nothing is marked as read. A later import fetches only "
               "new mail. The password is kept encrypted until the import ends, then deleted; it is "
               "never stored in plain text.")
    if imap_go:
        _queue(lambda queue: queue.enqueue_imap(owner, host=host, port=port, security=security, user=imap_user,
                                                password=password, folders=folders))
        del password
        st.session_state.pop("imap_password", None)

st.divider()
demo_text, demo_button = st.columns([3, 1], vertical_alignment="center")
demo_text.markdown("**No mailbox at hand?** Load the demo mailbox: 300 made-up messages about pets, "
                   "trips, invoices and family news, to try searching.")
if demo_button.button("Load the demo mailbox", icon="🧪", key="demo_go", width="stretch"):
    if _queue(lambda queue: queue.enqueue_demo(owner)):
        import_views.follow_demo()  # says "Demo mailbox loaded" once it is

st.divider()
st.header("Your imports")


def _has_active() -> bool:
    try:
        with import_views.outages():
            return bool(import_views.queue().active(owner))
    except MailError:
        return False


st.fragment(run_every=import_views.POLL_SECONDS if _has_active() else None)(_imports)()
