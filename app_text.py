"""What the app says about the cache: a sentence for a service that is not answering, and how a
WordNet relation that helped a phrase be served is explained."""

from __future__ import annotations

from sqlalchemy.exc import InterfaceError, OperationalError

from semcache import StorageError

RELATION_NOTES = {
    "synonym": "WordNet: synonyms",
    "kind": "WordNet: one is a kind of the other",
    "direct kind": "WordNet: one is a kind of the other",
    "aligned": "WordNet: the same words in another order or form",
    "related": "WordNet: related words",
    "sibling": "WordNet: two kinds of one thing",
    "same": "WordNet: the same word",
}
"""The note beside a phrase served through one of these relations (none for the others)."""


def explain(exc: BaseException) -> str:
    """A sentence a person can act on, for an error in `semcache.report.SERVICE_ERRORS`."""
    if isinstance(exc, StorageError) and isinstance(exc.__cause__, (OperationalError, InterfaceError)):
        exc = exc.__cause__
    if isinstance(exc, (OperationalError, InterfaceError)):
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
        return ("The database is not answering, so the cache cannot be read or changed right now "
                f"({reason}). Check that PostgreSQL is running and that DATABASE_URL points to it, "
                "then reload the page.")
    return str(exc)
