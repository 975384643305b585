"""Search: mail results for a query, and beside them the topic's pixel-art picture, drawn when it
is ready (see `finder`)."""

from __future__ import annotations

from concurrent.futures import Future

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

import app_state
import auth
from app_text import RELATION_NOTES
from finder import WORDS_ONLY_NOTE, Picture
from mail.query import MAX_QUERY_CHARS
from mail.store import message_count
from mail.types import MailError, StorageError

PAGE_SIZE = 20
_md = app_state.md


def url_page() -> int:
    """The page of results the URL asks for, from 0 (``page=1`` is the first)."""
    try:
        return max(0, int(st.query_params.get("page", "1")) - 1)
    except ValueError:
        return 0


st.title("Search your mail")

user = auth.require_user()
owner = user.name
try:
    engine = app_state.engine()
    total_messages = message_count(engine, owner)
except StorageError as exc:
    app_state.database_down(exc.__cause__)
except SQLAlchemyError as exc:
    app_state.database_down(exc)

if total_messages == 0:
    import import_views

    # The demo mailbox is a background import like any other; this page follows it live.
    if import_views.demo_loading(owner):
        st.stop()
    st.info("There is no mail here yet. Import a mailbox, or load the demo mailbox to try things out.")
    left, right, _ = st.columns([1, 1, 2])
    with left:
        if st.button("Import a mailbox", icon="📥"):
            st.switch_page("pages/import_mail.py")
    with right:
        if st.button("Load the demo mailbox", type="primary") and import_views.start_demo(owner):
            st.rerun()
    st.stop()

# The query and the page of results live in the URL (?q=invoices&page=2): a reload, a bookmark or
# a shared link opens the same search, and back/forward step through the searches made.
url_query = st.query_params.get("q", "")[:MAX_QUERY_CHARS]
if st.session_state.get("url_q") != url_query:  # opened, reloaded, or moved through the history
    st.session_state["q"] = url_query
    st.session_state["url_q"] = url_query
query = st.text_input(
    "Search", key="q", placeholder='dog · invoices from:alice · "trip to Paris" after:2024-01-01',
    label_visibility="collapsed")
if query != url_query:  # a new search: a new entry in the history, from its first page
    st.query_params.from_dict({"q": query} if query else {})
    st.session_state["url_q"] = query
with st.expander("Search syntax"):
    st.markdown(
        "Free words and `\"quoted phrases\"`; `-word` leaves out messages with that word; "
        "`from:name`, `to:name`, `subject:word`, `after:2024-01-31`, `before:2024-06`, "
        "`newer_than:30d`, `has:attachment`. The words are matched exactly and by meaning, "
        "so *puppy* also finds mail about a dog.")

if not query.strip():
    st.caption(f"{total_messages:,} messages. Type a topic to search them.")
    st.stop()

page = url_page()

try:
    finder = app_state.finder()
    found = finder.find(owner, query, page=page, page_size=PAGE_SIZE)
    if page and not found.results.hits:  # a bookmarked page that is no more: the last one there is
        found = finder.find(owner, query, page=0, page_size=PAGE_SIZE)
        page = max(0, -(-found.results.total // PAGE_SIZE) - 1)
        if page:
            found = finder.find(owner, query, page=page, page_size=PAGE_SIZE)
        st.query_params.from_dict({"q": query, "page": str(page + 1)} if page else {"q": query})
except StorageError as exc:
    app_state.database_down(exc.__cause__)
except MailError as exc:
    st.warning(_md(exc))  # it may quote the query
    st.stop()
except SQLAlchemyError as exc:
    app_state.database_down(exc)
results = found.results


def picture_lookup() -> Future[Picture]:
    """The topic's picture lookup, started once per topic typed, not on every rerun (opening a
    message, paging), on the shared picture threads: the results never wait for it."""
    asked = (owner, found.topic)
    held = st.session_state.get("picture")
    if held is None or held[0] != asked or st.session_state.get("picture_failed_shown"):
        # A note shown once (the service was down) is not the last word: the next run asks again.
        held = (asked, app_state.picture_pool().submit(finder.picture, owner, found))
        st.session_state["picture"] = held
        st.session_state["picture_failed_shown"] = False
    return held[1]


@st.fragment(run_every=1.0)
def making_picture(lookup: Future[Picture]) -> None:
    """Waits for the lookup on its own; once it is done the page runs again, draws the picture
    and stops asking. Once a second: asking twice as often made the picture appear later on a
    busy server (docs/benchmarks.md)."""
    if lookup.done():
        st.rerun()
    st.markdown("🖼️")
    st.caption("Making a picture…")


def show_picture(picture: Picture) -> None:
    served = picture.result
    if served is None:
        st.markdown("🖼️")
        st.caption(picture.note)  # the app's own sentence: no topic or mail text in it
        st.session_state["picture_failed_shown"] = True
        return
    st.image(served.image, width=192)
    if served.kind == "generated":
        st.caption(f"Generated (${served.cost_spent_usd:.2f})")
    elif not user.is_admin:
        # The cache is shared: whose phrase answered is another user's business.
        st.caption(f"From the picture cache (saved ${served.cost_saved_usd:.2f})")
    elif served.kind == "exact" and served.served_key != served.key:
        st.caption(f"Exact cache hit: *{_md(served.served_key)}*, the same word "
                   f"(saved ${served.cost_saved_usd:.2f})")
    elif served.kind == "exact":
        st.caption(f"Exact cache hit (saved ${served.cost_saved_usd:.2f})")
    else:
        st.caption(f"Served from cache: *{_md(served.served_key)}* "
                   f"(distance {served.distance:.2f}, saved ${served.cost_saved_usd:.2f})")
        if served.relation in RELATION_NOTES:
            st.caption(RELATION_NOTES[served.relation])


# On a phone (Streamlit stacks columns below 640 px) the picture comes above the results, and a
# pager stays one row.
_PHONE_CSS = """<style>
@media (max-width: 640px) {
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"] .st-key-results) {
    flex-direction: column-reverse; gap: 1rem; }
  .st-key-picture img { max-width: 96px !important; height: auto !important; }
  .st-key-pager-top [data-testid="stHorizontalBlock"], .st-key-pager-bottom [data-testid="stHorizontalBlock"] {
    flex-wrap: nowrap; align-items: center; }
  .st-key-pager-top [data-testid="stColumn"], .st-key-pager-bottom [data-testid="stColumn"] {
    min-width: 0 !important; width: auto !important; flex: 1 1 auto !important; }
}
</style>"""


def pager(where: str) -> None:
    """Previous / next, above and below the results; the page goes into the URL."""
    pages = max(1, -(-results.total // PAGE_SIZE))
    if pages == 1:
        return
    prev_col, label_col, next_col = st.container(key=f"pager-{where}").columns(
        [1, 2, 1], vertical_alignment="center")
    label_col.caption(f"Page {page + 1} of {pages:,}")
    for column, label, target, disabled in ((prev_col, "← Previous", page - 1, page == 0),
                                            (next_col, "Next →", page + 1, page + 1 >= pages)):
        if column.button(label, key=f"{where}-{label}", disabled=disabled):
            st.query_params["page"] = str(target + 1)
            st.session_state["scroll_to_results"] = True
            st.rerun()


def scroll_to_results() -> None:
    """Brings the first result into view after a page change (the page keeps its scroll position
    otherwise, which leaves the reader at the bottom of the new page)."""
    st.session_state["scrolls"] = st.session_state.get("scrolls", 0) + 1
    st.html(f"<script>/* {st.session_state['scrolls']} */"
            "document.querySelector('.st-key-results')?.scrollIntoView({block: 'start'});</script>",
            unsafe_allow_javascript=True)


lookup = picture_lookup() if found.topic else None
st.html(_PHONE_CSS)
results_col, image_col = st.columns([3, 1], gap="large")
results_col = results_col.container(key="results")
image_col = image_col.container(key="picture")

with results_col:
    st.caption(f"{results.total:,} messages · {_md(results.query.describe())}")
    pager("top")
    if st.session_state.pop("scroll_to_results", False):
        scroll_to_results()
    if found.words_only:
        st.caption(WORDS_ONLY_NOTE)
    if not results.hits:
        st.info("Nothing matches. Try fewer words, or remove a filter.")
    for hit in results.hits:
        with st.container(border=True):
            top, action = st.columns([5, 1])
            when = hit.date.strftime("%d %b %Y") if hit.date else ""
            top.markdown(f"**{_md(hit.subject) or '(no subject)'}**")
            top.caption(" · ".join(part for part in (_md(hit.sender), when, "📎" if hit.has_attachments else "")
                                   if part))
            if hit.snippet:
                top.markdown(hit.snippet, unsafe_allow_html=True)  # escaped text, matches in <mark>
            if action.button("Open", key=f"open-{hit.id}"):
                st.session_state["open"] = hit.id

    pager("bottom")

with image_col:
    if lookup is not None:
        if lookup.done():
            show_picture(lookup.result())
        else:
            making_picture(lookup)


def close_message() -> None:
    st.session_state.pop("open", None)


# Open until dismissed: the page running again when the picture arrives keeps it open.
@st.dialog("Message", width="large", on_dismiss=close_message)
def show_message(message_pk: int) -> None:
    try:
        conversation = finder.conversation(owner, message_pk)
    except (StorageError, SQLAlchemyError):
        st.error("The mail database is not answering. Try again in a moment.")
        return
    if conversation is None:
        st.warning("That message is not in your mailbox.")
        return
    for item in conversation:
        with st.container(border=True):
            st.markdown(f"**{_md(item.subject) or '(no subject)'}**")
            st.caption(" · ".join(part for part in (
                f"From {_md(item.sender)}", item.date.strftime("%d %b %Y %H:%M") if item.date else "",
                f"to {_md(', '.join(item.to))}" if item.to else "") if part))
            st.text(item.body)  # always plain text, never rendered as HTML or markdown
            if item.attachments:
                st.caption("Attachments: " + ", ".join(
                    f"{_md(a.get('filename') or 'unnamed')} ({_md(a.get('content_type') or '')}, "
                    f"{a.get('size', 0):,} bytes)" for a in item.attachments))


if st.session_state.get("open"):
    show_message(st.session_state["open"])
