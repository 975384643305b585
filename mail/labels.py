"""What a user adds to their own mail: labels on messages (found again with ``label:``) and
searches saved by name. Both are per owner: nobody sees or changes another user's. The
statements are in `mail.sql`; a database error leaves these as `StorageError`."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import Engine

from mail import sql
from mail.query import MAX_LABEL_CHARS, MAX_QUERY_CHARS, normal_label
from mail.types import MailError

__all__ = ["LabelError", "SavedSearch", "add_label", "remove_label", "labels_of", "owner_labels",
           "saved_searches", "save_search", "delete_saved_search", "MAX_LABELS_PER_MESSAGE",
           "MAX_SAVED_SEARCHES", "MAX_NAME_CHARS"]

MAX_LABELS_PER_MESSAGE = 20
MAX_SAVED_SEARCHES = 50
MAX_NAME_CHARS = 80


class LabelError(MailError, ValueError):
    """A label or a saved search that cannot be kept as given; the message says what to change."""


@dataclass(frozen=True)
class SavedSearch:
    id: int
    name: str
    query: str


def add_label(engine: Engine, owner: str, message_pk: int, label: str) -> str:
    """Put a label on one of ``owner``'s messages; the label as stored (`normal_label`: "To do"
    becomes "to-do", what ``label:to-do`` finds)."""
    stored = normal_label(label)
    if not stored:
        raise LabelError("Type a label: letters, digits or other characters, not only spaces.")
    if len(" ".join(str(label).split())) > MAX_LABEL_CHARS:
        raise LabelError(f"A label has at most {MAX_LABEL_CHARS} characters.")
    with sql.storage_errors("labelling the message"), engine.begin() as conn:
        if sql.label_count(conn, owner, message_pk) >= MAX_LABELS_PER_MESSAGE:
            raise LabelError(f"A message carries at most {MAX_LABELS_PER_MESSAGE} labels: remove one first.")
        if not sql.add_label(conn, owner, message_pk, stored):
            raise LabelError("That message is not in your mailbox.")
    return stored


def remove_label(engine: Engine, owner: str, message_pk: int, label: str) -> None:
    with sql.storage_errors("removing the label"), engine.begin() as conn:
        sql.remove_label(conn, owner, message_pk, normal_label(label))


def labels_of(engine: Engine, owner: str, message_pks: Sequence[int]) -> dict[int, list[str]]:
    """message id → its labels, for the ones of ``message_pks`` that have any."""
    if not message_pks:
        return {}
    with sql.storage_errors("reading your labels"), engine.connect() as conn:
        return sql.labels_of(conn, owner, message_pks)


def owner_labels(engine: Engine, owner: str, limit: int = 100) -> list[tuple[str, int]]:
    """``owner``'s labels and how many messages carry each, most used first."""
    with sql.storage_errors("reading your labels"), engine.connect() as conn:
        return sql.owner_labels(conn, owner, limit)


def saved_searches(engine: Engine, owner: str) -> list[SavedSearch]:
    with sql.storage_errors("reading your saved searches"), engine.connect() as conn:
        rows = sql.saved_search_rows(conn, owner, MAX_SAVED_SEARCHES)
    return [SavedSearch(row.id, row.name, row.query) for row in rows]


def save_search(engine: Engine, owner: str, name: str, query: str) -> SavedSearch:
    """Save ``query`` under ``name`` (a name already used gets the new query)."""
    name = " ".join(_printable(name).split())
    query = " ".join(_printable(query).split())
    if not name:
        raise LabelError("Give the search a name.")
    if len(name) > MAX_NAME_CHARS:
        raise LabelError(f"A saved search's name has at most {MAX_NAME_CHARS} characters.")
    if not query:
        raise LabelError("Type a search first, then save it.")
    if len(query) > min(1000, MAX_QUERY_CHARS):
        raise LabelError("That search is too long to save (at most 1,000 characters).")
    with sql.storage_errors("saving the search"), engine.begin() as conn:
        if not sql.save_search(conn, owner, name, query, MAX_SAVED_SEARCHES):
            raise LabelError(f"You have {MAX_SAVED_SEARCHES} saved searches: delete one first.")
    found = [s for s in saved_searches(engine, owner) if s.name == name]
    return found[0] if found else SavedSearch(0, name, query)


def delete_saved_search(engine: Engine, owner: str, search_id: int) -> bool:
    with sql.storage_errors("deleting the saved search"), engine.begin() as conn:
        return sql.delete_saved_search(conn, owner, search_id)


def _printable(text: str) -> str:
    """Control, surrogate and private characters (NUL and lone surrogates, which PostgreSQL
    refuses) become spaces."""
    return "".join(" " if unicodedata.category(ch) in ("Cc", "Cs", "Co") else ch for ch in str(text)[:4000])
