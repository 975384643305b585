"""What the Search page offers around its results: the line that says how the query was read,
the user's saved searches in the sidebar, the labels on a result, and the export of a search as
an mbox file. Each draws one thing from one call into `mail`; nothing here is shared between users.
"""

from __future__ import annotations

import re

import streamlit as st
from sqlalchemy import Engine

from markup import markdown_text
from mail import labels
from mail.export import MAX_EXPORT_MESSAGES, mbox_of_search
from mail.query import Query
from mail.types import MailError, StorageError

SYNTAX_HELP = (
    "Free words and `\"quoted phrases\"`; `-word` leaves out messages with that word. Operators: "
    "`from:name`, `to:name` (To or Cc), `cc:name` (Cc only), `subject:word`, "
    "`after:2024-01-31`, `before:2024-06`, `newer_than:30d`, `older_than:1y`, `has:attachment`, "
    "`filename:pdf` (an attachment whose name contains it), "
    "`larger:100k`, `smaller:2M` (the size of the whole message as imported, attachments included; "
    "k = 1,024 bytes, M = 1,024 k), "
    "`in:INBOX` (the folder it was imported from, or the mailbox file's name: `in:archive` for "
    "archive.mbox), `label:receipts` (a label you put on a message with 🏷️). A value with spaces "
    "goes in quotes: `label:\"to do\"`. The words are matched exactly and by meaning, so *puppy* "
    "also finds mail about a dog. Anything else with a colon is searched as a word.")

_md = markdown_text


def read_as(query: Query) -> None:
    """The "how this query was read" line under the search box."""
    st.caption("Read as: " + " · ".join(_md(part) for part in query.analysis()))


def _run_saved(text: str) -> None:
    st.query_params.from_dict({"q": text})


def _delete_saved(engine: Engine, owner: str, search_id: int, name: str) -> None:
    try:
        labels.delete_saved_search(engine, owner, search_id)
        st.toast(f"Deleted the saved search {_md(name)}.")
    except StorageError:
        st.toast("The mail database is not answering: nothing was deleted. Try again in a moment.")


def _save(engine: Engine, owner: str, query: str) -> None:
    name = st.session_state.get("saved-search-name", "")
    try:
        saved = labels.save_search(engine, owner, name, query)
    except MailError as exc:  # LabelError says what to change; StorageError to try again
        st.session_state["saved-search-error"] = str(exc)
        return
    st.session_state["saved-search-name"] = ""
    st.session_state.pop("saved-search-error", None)
    st.toast(f"Saved as {_md(saved.name)}.")


def saved_searches_sidebar(engine: Engine, owner: str, query: str) -> None:
    """The sidebar's saved searches: each runs when clicked (it becomes ``?q=``), ✕ deletes it;
    the search in the box can be saved under a name."""
    with st.sidebar:
        st.subheader("Saved searches")
        try:
            saved = labels.saved_searches(engine, owner)
        except StorageError:
            st.caption("The mail database is not answering.")
            return
        if not saved:
            st.caption("None yet: search, then save it here under a name.")
        for item in saved:
            run_col, delete_col = st.columns([5, 1], vertical_alignment="center")
            run_col.button(_md(item.name), key=f"saved-run-{item.id}", help=_md(item.query), on_click=_run_saved,
                           args=(item.query,), type="tertiary", width="stretch")
            delete_col.button("✕", key=f"saved-delete-{item.id}", help=f"Delete {_md(item.name)}",
                              on_click=_delete_saved, args=(engine, owner, item.id, item.name), type="tertiary")
        if query.strip():
            with st.form("save-search", clear_on_submit=False, border=False):
                st.text_input("Save this search as", key="saved-search-name", max_chars=labels.MAX_NAME_CHARS,
                              placeholder="a name, e.g. Receipts")
                st.form_submit_button("Save search", on_click=_save, args=(engine, owner, query))
            if st.session_state.get("saved-search-error"):
                st.warning(_md(st.session_state.pop("saved-search-error")))


def _label_key(message_pk: int) -> str:
    return f"label-new-{message_pk}"


def _add_label(engine: Engine, owner: str, message_pk: int) -> None:
    label = st.session_state.get(_label_key(message_pk), "")
    try:
        stored = labels.add_label(engine, owner, message_pk, label)
    except MailError as exc:
        st.toast(_md(exc))
        return
    st.session_state[_label_key(message_pk)] = ""
    st.toast(f"Labelled {_md(stored)}: find it with label:{_md(stored)}")


def _remove_label(engine: Engine, owner: str, message_pk: int, label: str) -> None:
    try:
        labels.remove_label(engine, owner, message_pk, label)
    except StorageError as exc:
        st.toast(_md(exc))


def result_labels(engine: Engine, owner: str, message_pks: list[int]) -> dict[int, list[str]]:
    """The labels of the results shown, by message; none when the database does not answer
    (the results still show)."""
    try:
        return labels.labels_of(engine, owner, message_pks)
    except StorageError:
        return {}


def label_control(engine: Engine, owner: str, message_pk: int, current: list[str]) -> None:
    """A result's 🏷️: its labels (✕ removes one) and a box to add one."""
    with st.popover("🏷️", help="Labels", key=f"labels-{message_pk}"):
        for label in current:
            st.button(f"✕ {_md(label)}", key=f"label-remove-{message_pk}-{label}", type="tertiary",
                      on_click=_remove_label, args=(engine, owner, message_pk, label))
        with st.form(f"label-form-{message_pk}", border=False):
            st.text_input("Add a label", key=_label_key(message_pk), max_chars=64, placeholder="e.g. receipts")
            st.form_submit_button("Add", on_click=_add_label, args=(engine, owner, message_pk))


def labels_caption(current: list[str]) -> str:
    """The labels of a result as shown in its caption line."""
    return "🏷️ " + ", ".join(_md(label) for label in current) if current else ""


def _file_name(query: Query) -> str:
    stem = re.sub(r"[^\w-]+", "-", query.topic or "search", flags=re.ASCII).strip("-")[:40] or "search"
    return f"mail-{stem}.mbox"


def export_button(engine: Engine, owner: str, query: Query, embedder) -> None:
    """Download every message of this search (not only this page) as an mbox file, made when
    clicked."""

    def build() -> bytes:
        return mbox_of_search(engine, owner, query, embedder=embedder)

    st.download_button(
        "Export as mbox", data=build, file_name=_file_name(query), mime="application/mbox", on_click="ignore",
        key="export-mbox", icon="📤",
        help=f"Every message of this search, up to {MAX_EXPORT_MESSAGES:,}, oldest first, rebuilt from what is "
             "stored: headers and the text of the body. Attachments are not kept, so they are not in the "
             "file; each message lists their names in an X-Attachments-Not-Included header.")
