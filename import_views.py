"""What the pages show of the background imports (`mail.jobs`): an import's live progress, its
summary, the sidebar's small status on every page, and the demo mailbox loaded as an import.

Everything shown is read from the imports' rows, so it is the same after a reload, in a second
tab or in another browser; each user sees only their own imports.
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

import app_state
from mail import importing
from mail.jobs import ImportJob
from mail.types import MailError

POLL_SECONDS = 2.0
"""How often a page with an unfinished import reads its progress again."""
IDLE_POLL_SECONDS = 10.0
"""How often the sidebar looks for an import started elsewhere (another tab, the Import page)."""

_md = app_state.md


outages = importing.reporting_outages
"""Around the queue's calls: a database outage becomes `ImportStopped`, a sentence with what to do."""


def queue():
    """The shared import queue (built on first use; an outage then is `ImportStopped` too)."""
    with outages():
        return app_state.import_queue()


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def viewer_zone():
    """The viewer's time zone, as their browser says (UTC when it does not)."""
    name = st.context.timezone
    try:
        return ZoneInfo(name) if name else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def when(at: datetime, now: datetime | None = None) -> str:
    """A moment as people say it: "just now", "5 min ago", "3 h ago", then "1 Dec 14:03"
    (this year) or "1 Dec 2025", in the viewer's time zone."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    seconds = (now - at).total_seconds()
    if -60 < seconds < 60:  # a clock a little ahead is "just now" too
        return "just now"
    if 0 <= seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    if 0 <= seconds < 6 * 3600:
        return f"{seconds // 3600:.0f} h ago"
    local, today = at.astimezone(viewer_zone()), now.astimezone(viewer_zone())
    if local.year == today.year:
        return f"{local.day} {local:%b %H:%M}"
    return f"{local.day} {local:%b %Y}"


def waiting_note(job: ImportJob, ahead: ImportJob | None, workers: int) -> str:
    if ahead is not None:
        return f"Queued: starts when your import of {_md(ahead.label)} is done."
    if job.error:
        return f"Waiting to go on. {_md(job.error)}"
    if workers == 0:
        return ("Queued: no import worker is running. Start one with `python -m mail worker` "
                "(`make run` starts one with the app).")
    return "Queued: waiting for a free worker."


def progress(job: ImportJob) -> None:
    """A running import's bar and caption: count, rate and time left."""
    if job.total:
        st.progress(min(job.done / job.total, 1.0), text=f"{job.done:,} of {job.total:,} messages")
    else:
        st.progress(1.0 if job.done else 0.0, text=f"{job.done:,} messages" if job.done else "Opening the mailbox…")
    if job.cancel_requested:
        st.caption("Stopping after the current batch; what was imported so far is kept.")
    elif job.error:
        st.caption(_md(job.error))
    elif job.rate:
        left = f" · about {duration(job.eta_seconds)} left" if job.eta_seconds else ""
        st.caption(f"{job.rate:,.0f} messages a second{left}")


def sidebar_status(owner: str) -> None:
    """In the sidebar of every page: the user's running import, live, and how many wait."""

    def draw() -> None:
        try:
            active = app_state.import_queue().active(owner)
        except (SQLAlchemyError, MailError, OSError):
            return
        if not active:
            return
        running = next((job for job in active if job.status == "running"), None)
        waiting = len(active) - (running is not None)
        if running is not None:
            st.caption(f"📥 Importing **{_md(running.label)}**")
            if running.total:
                st.progress(min(running.done / running.total, 1.0),
                            text=f"{running.done:,} of {running.total:,}"
                                 + (f" · {duration(running.eta_seconds)} left" if running.eta_seconds else ""))
            else:
                st.progress(0.0, text=f"{running.done:,} messages")
        if waiting:
            st.caption(f"📥 {waiting} {'import' if waiting == 1 else 'imports'} queued")

    announce_demo(owner)
    with st.sidebar:
        st.fragment(run_every=POLL_SECONDS if _has_active(owner) else IDLE_POLL_SECONDS)(draw)()


def _has_active(owner: str) -> bool:
    try:
        return bool(app_state.import_queue().active(owner))
    except (SQLAlchemyError, MailError, OSError):
        return False


def demo_loading(owner: str) -> bool:
    """On the Search page of an empty mailbox: the demo mailbox being loaded, live; True while it
    is (the page shows nothing else), and the page starts over when it is done."""
    try:
        with outages():
            active = [job for job in queue().active(owner) if job.kind == "demo"]
    except MailError:
        return False
    if not active:
        return False
    follow_demo()

    @st.fragment(run_every=POLL_SECONDS)
    def draw() -> None:
        try:
            with outages():
                job = queue().get(owner, active[0].id)
                workers = queue().workers_alive() if job is not None and job.status == "queued" else 1
        except MailError as error:
            st.error(str(error), icon="🚫")
            return
        if job is None or not job.active:
            st.rerun(scope="app")  # the page starts over; `announce_demo` says how it ended
        st.subheader("Loading the demo mailbox…")
        if job.status == "queued":
            st.info(waiting_note(job, None, workers), icon="⏳")
        else:
            progress(job)

    draw()
    return True


def start_demo(owner: str) -> bool:
    """Queue the demo mailbox's import; False (with the reason shown) when it cannot be queued."""
    try:
        with outages():
            queue().enqueue_demo(owner)
    except MailError as error:
        st.error(str(error), icon="🚫")
        return False
    follow_demo()
    return True


_FOLLOWED_DEMO = "_demo_import_followed"


def follow_demo() -> None:
    """Remember that this browser session loads the demo mailbox, so that the page it is on
    then says so once the import has ended (`announce_demo`)."""
    st.session_state[_FOLLOWED_DEMO] = True


def demo_outcome(job: ImportJob) -> tuple[str, str]:
    """What a finished import of the demo mailbox did, in a sentence, with its icon."""
    if job.status == "done":
        already = f" ({job.duplicates:,} were here already)" if job.duplicates else ""
        return f"Demo mailbox loaded: {job.imported:,} messages{already}.", "✅"
    if job.status == "cancelled":
        return f"Loading the demo mailbox was cancelled; {job.imported:,} messages were kept.", "✋"
    return f"The demo mailbox was not loaded: {_md(job.error or 'the import failed')}", "🚫"


def announce_demo(owner: str) -> None:
    """Once the demo mailbox this session started loading has finished: a toast with how it
    ended, on whichever page the session is (the one that started it, as a rule), once."""
    if not st.session_state.get(_FOLLOWED_DEMO):
        return
    try:
        with outages():
            jobs = [job for job in queue().imports(owner) if job.kind == "demo"]
    except MailError:
        return  # asked again on the next run
    latest = max(jobs, key=lambda job: job.id, default=None)
    if latest is not None and latest.active:
        return
    del st.session_state[_FOLLOWED_DEMO]
    if latest is not None:
        text, icon = demo_outcome(latest)
        st.toast(text, icon=icon)
