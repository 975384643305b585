"""Search: mail results for a query, with the topic's pixel-art image beside them."""

from __future__ import annotations

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

import app_state
import auth
from mail.query import parse_query
from mail.search import message, search, thread
from mail.store import import_demo, message_count
from mail.types import MailError
from semcache import BudgetExceeded, EmbeddingError, SemcacheError
from semcache.matching import RELATION_NOTES

PAGE_SIZE = 20
_md = app_state.md


st.title("Search your mail")

user = auth.require_user()
owner = user.name
try:
    engine = app_state.engine()
    total_messages = message_count(engine, owner)
except SQLAlchemyError:
    st.error("The mail database is not answering. Try again in a moment.")
    st.stop()

if total_messages == 0:
    st.info("There is no mail here yet. Import a mailbox, or load the demo mailbox to try things out.")
    left, right, _ = st.columns([1, 1, 2])
    with left:
        if st.button("Import a mailbox", icon="📥"):
            st.switch_page("pages/import_mail.py")
    with right:
        if st.button("Load the demo mailbox", type="primary"):
            with st.status("Loading the demo mailbox…", expanded=True) as status:
                bar = st.progress(0.0)
                summary = import_demo(engine, owner, app_state.embedder(), app_state.settings().data_dir,
                                      progress=lambda p: bar.progress(min(1.0, p.done / (p.total or p.done or 1)),
                                                                      text=f"{p.done} messages"))
                status.update(label=f"Loaded {summary.imported} demo messages.", state="complete")
            st.rerun()
    st.stop()

query = st.text_input(
    "Search", key="q", placeholder='dog · invoices from:alice · "trip to Paris" after:2024-01-01',
    label_visibility="collapsed")
with st.expander("Search syntax"):
    st.markdown(
        "Free words and `\"quoted phrases\"`; `-word` leaves out messages with that word; "
        "`from:name`, `to:name`, `subject:word`, `after:2024-01-31`, `before:2024-06`, "
        "`newer_than:30d`, `has:attachment`. The words are matched exactly and by meaning, "
        "so *puppy* also finds mail about a dog.")

if not query.strip():
    st.caption(f"{total_messages:,} messages. Type a topic to search them.")
    st.stop()

if st.session_state.get("last_query") != query:
    st.session_state["last_query"] = query
    st.session_state["page"] = 0
page = st.session_state.get("page", 0)

try:
    topic = parse_query(query).topic
    # One embedding serves both the mail search and the picture lookup that follows.
    embedding_failed: EmbeddingError | None = None  # then not asked again in this run
    try:
        cache = app_state.cache()
        shared = topic and cache.embedder is app_state.embedder()  # not with an embedding template
        vector = cache.embedding(topic) if shared else None
    except EmbeddingError as exc:
        vector, embedding_failed = None, exc
    except (SemcacheError, SQLAlchemyError):
        vector = None  # the search embeds the topic itself
    try:
        results = search(engine, owner, query, embedder=None if embedding_failed else app_state.embedder(),
                         limit=PAGE_SIZE, offset=page * PAGE_SIZE, query_vector=vector)
    except EmbeddingError as exc:  # the words alone still find mail
        embedding_failed = exc
        results = search(engine, owner, query, limit=PAGE_SIZE, offset=page * PAGE_SIZE)
except MailError as exc:
    st.warning(str(exc))
    st.stop()
except SQLAlchemyError:
    st.error("The mail database is not answering. Try again in a moment.")
    st.stop()

results_col, image_col = st.columns([3, 1], gap="large")

with image_col:
    if results.topic:
        try:
            # One lookup per topic typed, not one per rerun (opening a message, paging).
            remembered = st.session_state.get("image")
            if remembered is not None and remembered[0] == results.topic:
                found = remembered[1]
            elif embedding_failed is not None:
                raise embedding_failed
            else:
                found = app_state.cache().get(results.topic, user=owner)
                st.session_state["image"] = (results.topic, found)
        except BudgetExceeded as exc:
            st.markdown("🖼️")
            st.caption(f"No new picture: {exc}")
        except SemcacheError as exc:
            st.markdown("🖼️")
            st.caption(f"No picture this time: {exc}")
        except SQLAlchemyError:
            st.markdown("🖼️")
            st.caption("No picture this time: the image cache is not answering.")
        else:
            st.image(found.image, width=192)
            if found.kind == "generated":
                st.caption(f"Generated (${found.cost_spent_usd:.2f})")
            elif not user.is_admin:
                # The cache is shared: whose phrase answered is another user's business.
                st.caption(f"From the picture cache (saved ${found.cost_saved_usd:.2f})")
            elif found.kind == "exact" and found.served_key != found.key:
                st.caption(f"Exact cache hit: *{_md(found.served_key)}*, the same word "
                           f"(saved ${found.cost_saved_usd:.2f})")
            elif found.kind == "exact":
                st.caption(f"Exact cache hit (saved ${found.cost_saved_usd:.2f})")
            else:
                st.caption(f"Served from cache: *{_md(found.served_key)}* "
                           f"(distance {found.distance:.2f}, saved ${found.cost_saved_usd:.2f})")
                if found.relation in RELATION_NOTES:
                    st.caption(RELATION_NOTES[found.relation])

with results_col:
    st.caption(f"{results.total:,} messages · {_md(results.query.describe())}")
    if embedding_failed is not None:
        st.caption("Matched by the words only: the search by meaning is not answering.")
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

    pages = max(1, -(-results.total // PAGE_SIZE))
    if pages > 1:
        prev_col, label_col, next_col = st.columns([1, 2, 1])
        if prev_col.button("← Previous", disabled=page == 0):
            st.session_state["page"] = page - 1
            st.rerun()
        label_col.caption(f"Page {page + 1} of {pages}")
        if next_col.button("Next →", disabled=page + 1 >= pages):
            st.session_state["page"] = page + 1
            st.rerun()


@st.dialog("Message", width="large")
def show_message(message_pk: int) -> None:
    view = message(engine, owner, message_pk)
    if view is None:
        st.warning("That message is not in your mailbox.")
        return
    conversation = thread(engine, owner, view.thread_id) or [view]
    for item in conversation:
        with st.container(border=True):
            st.markdown(f"**{_md(item.subject) or '(no subject)'}**")
            st.caption(" · ".join(_md(part) for part in (
                f"From {item.sender}", item.date.strftime("%d %b %Y %H:%M") if item.date else "",
                f"to {', '.join(item.to)}" if item.to else "") if part))
            st.text(item.body)  # always plain text, never rendered as HTML or markdown
            if item.attachments:
                st.caption("Attachments: " + ", ".join(
                    f"{_md(a.get('filename') or 'unnamed')} ({_md(a.get('content_type') or '')}, {a.get('size', 0):,} bytes)"
                    for a in item.attachments))


if st.session_state.get("open"):
    opened = st.session_state.pop("open")
    show_message(opened)
