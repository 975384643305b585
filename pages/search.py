"""Search: mail results for a query, and beside them the topic's pixel-art picture, drawn when it
is ready (see `finder`)."""

from __future__ import annotations

from concurrent.futures import Future

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

import app_state
import auth
import message_view
import search_tools
from app_text import RELATION_NOTES
from finder import WORDS_ONLY_NOTE, Picture
from mail.query import MAX_QUERY_CHARS
from mail.sql import SORTS
from mail.store import message_count
from mail.types import MailError, StorageError

PAGE_SIZE = 20
# The search box's examples: each finds something in the demo mailbox.
PLACEHOLDER = 'dog · invoices from:novak · "Paris trip" newer_than:1y'
_md = app_state.md


def url_view() -> dict[str, str]:
    """How the URL asks for the results to be shown: ``sort`` (newest, oldest; relevance when
    absent) and ``threads=1`` (one row per conversation), only what differs from the default."""
    view = {}
    if st.query_params.get("sort") in SORTS[1:]:
        view["sort"] = st.query_params["sort"]
    if st.query_params.get("threads") == "1":
        view["threads"] = "1"
    return view


def url_page() -> int:
    """The page of results the URL asks for, from 0 (``page=1`` is the first)."""
    try:
        return max(0, int(st.query_params.get("page", "1")) - 1)
    except ValueError:
        return 0


def url_message() -> int | None:
    """The message the URL opens (``open=123``): it is shown in place of the results, so a
    reload or a bookmark keeps it open and the browser's back button returns to the results."""
    value = st.query_params.get("open", "")
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def open_message(message_pk: int) -> None:
    st.query_params["open"] = str(message_pk)
    st.session_state["scroll_to_results"] = True


def close_message() -> None:
    st.query_params.pop("open", None)


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
    "Search", key="q", placeholder=PLACEHOLDER, label_visibility="collapsed")
view = url_view()
if query != url_query:  # a new search: a new entry in the history, from its first page, shown the same way
    st.query_params.from_dict({"q": query, **view} if query else {})
    st.session_state["url_q"] = query
read_as_line = st.empty()  # how the query was read, once it is parsed
with st.expander("Search syntax"):
    st.markdown(search_tools.SYNTAX_HELP)
search_tools.saved_searches_sidebar(engine, owner, query)

if not query.strip():
    st.caption(f"{total_messages:,} messages. Type a topic to search them.")
    st.stop()

# The order and the grouping live in the URL too (?sort=newest&threads=1); changing one starts
# again from the first page.
if st.session_state.get("url_view") != view or "sort" not in st.session_state:
    st.session_state["sort"] = view.get("sort", SORTS[0])
    st.session_state["threads"] = "threads" in view
    st.session_state["url_view"] = view
sort_col, threads_col = st.columns([1, 2], vertical_alignment="center")
sort = sort_col.selectbox("Sort by", SORTS, key="sort", format_func=str.capitalize)
threads = threads_col.toggle("Group by conversation", key="threads")
chosen_view = {**({"sort": sort} if sort != SORTS[0] else {}), **({"threads": "1"} if threads else {})}
if chosen_view != view:
    st.query_params.from_dict({"q": query, **chosen_view})
    st.session_state["url_view"] = view = chosen_view
shown = {"sort": sort, "threads": threads}

page = url_page()

try:
    finder = app_state.finder()
    found = finder.find(owner, query, page=page, page_size=PAGE_SIZE, **shown)
    if page and not found.results.hits:  # a bookmarked page that is no more: the last one there is
        found = finder.find(owner, query, page=0, page_size=PAGE_SIZE, **shown)
        page = max(0, -(-found.results.total // PAGE_SIZE) - 1)
        if page:
            found = finder.find(owner, query, page=page, page_size=PAGE_SIZE, **shown)
        st.query_params.from_dict({"q": query, **view, **({"page": str(page + 1)} if page else {})})
except StorageError as exc:
    app_state.database_down(exc.__cause__)
except MailError as exc:
    st.warning(_md(exc))  # it may quote the query
    st.stop()
except SQLAlchemyError as exc:
    app_state.database_down(exc)
results = found.results
with read_as_line:
    search_tools.read_as(found.query)


def picture_lookup() -> Future[Picture]:
    """The topic's picture lookup, started once per topic typed, not on every rerun (opening a
    message, paging), on the shared picture threads: the results never wait for it. A picture
    banned since for this topic ("wrong match") is looked up again at once."""
    asked = (owner, found.topic)
    held = st.session_state.get("picture")
    banned = held is not None and held[1].done() and not finder.still_served(held[1].result())
    if held is None or held[0] != asked or st.session_state.get("picture_failed_shown") or banned:
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


def show_message(message_pk: int) -> None:
    """The message and its thread in place of the results, as one element (`message_view`), so
    that opening another never shows this one first; what came after it is hidden meanwhile."""
    st.html(message_view.CSS + """<style>
      .st-key-results [data-testid="stElementContainer"]:has(.message-view) ~ * { display: none; }</style>""")
    st.button("← Back to results", key="close-message", on_click=close_message)
    try:
        conversation = finder.conversation(owner, message_pk)
    except (StorageError, SQLAlchemyError):
        st.error("The mail database is not answering. Try again in a moment.")
        return
    if conversation is None:
        st.warning("That message is not in your mailbox.")
        return
    st.html(message_view.conversation_html(conversation))
    if st.session_state.pop("scroll_to_results", False):  # opened from further down the results
        scroll_to_results()


lookup = picture_lookup() if found.topic else None
st.html(_PHONE_CSS)
results_col, image_col = st.columns([3, 1], gap="large")
results_col = results_col.container(key="results")
image_col = image_col.container(key="picture")

with image_col:
    if lookup is not None:
        if lookup.done():
            show_picture(lookup.result())
        else:
            making_picture(lookup)

if (opened := url_message()) is not None:  # the message takes the results' place, the picture stays
    with results_col:
        show_message(opened)
    st.stop()

with results_col:
    unit = ("conversation" if results.threads else "message") + ("" if results.total == 1 else "s")
    st.caption(f"{results.total:,} {unit} · {_md(results.query.describe())}")
    if results.hits:
        search_tools.export_button(engine, owner, found.query, None if found.words_only else finder.embedder)
    pager("top")
    if st.session_state.pop("scroll_to_results", False):
        scroll_to_results()
    if found.words_only:
        st.caption(WORDS_ONLY_NOTE)
    if not results.hits and results.topic:
        st.info(f"No message contains {_md(results.topic)}, and none is close in meaning. "
                "Try other words, or remove a filter.")
    elif not results.hits:
        st.info("Nothing matches. Try fewer words, or remove a filter.")
    elif results.meaning_only:
        st.markdown(f"No message contains *{_md(results.topic)}*; these are the closest by meaning:")
    hit_labels = search_tools.result_labels(engine, owner, [hit.id for hit in results.hits])
    for hit in results.hits:
        with st.container(border=True):
            top, action = st.columns([5, 1])
            when = hit.date.strftime("%d %b %Y") if hit.date else ""
            top.markdown(f"**{_md(hit.subject) or '(no subject)'}**")
            in_thread = (f"{hit.thread_size:,} messages" + (
                f", {hit.thread_matches:,} match" if 1 < hit.thread_matches < hit.thread_size else "")
                if results.threads and hit.thread_size > 1 else "")
            top.caption(" · ".join(part for part in (_md(hit.sender), when, in_thread,
                                                     "📎" if hit.has_attachments else "",
                                                     search_tools.labels_caption(hit_labels.get(hit.id, [])))
                                   if part))
            if hit.snippet:
                top.markdown(hit.snippet, unsafe_allow_html=True)  # escaped text, matches in <mark>
            # Before the page runs again, so that this run draws the message, not the results.
            action.button("Open", key=f"open-{hit.id}", on_click=open_message, args=(hit.id,))
            with action:
                search_tools.label_control(engine, owner, hit.id, hit_labels.get(hit.id, []))

    pager("bottom")
