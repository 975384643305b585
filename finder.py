"""A search as the Search page shows it, without the page: the mail results first, the topic's
picture after.

    finder = Finder(engine, embedder, cache)
    found = finder.find("alice", "invoices from:bob", page=0, page_size=20)   # fast: draw it now
    picture = finder.picture("alice", found)                                  # may take seconds

`find` parses the query once and embeds its topic once; when the picture cache embeds the way
the mail search does (same model and dimensions, no embedding template), that one vector serves
both the mail search and the picture lookup. `picture` never raises: a daily limit, a failing
image service or a database that is not answering comes back as a `Picture` with the sentence
to show instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sqlalchemy import Engine

from mail.query import Query, parse_query
from mail.search import MessageView, SearchResults, message, search, thread
from semcache import BudgetExceeded, CacheResult, EmbeddingError, SemanticCache, SemcacheError, StorageError
from semcache.interfaces import Embedder

__all__ = ["Finder", "Found", "Picture", "PictureStatus", "WORDS_ONLY_NOTE"]

log = logging.getLogger(__name__)

WORDS_ONLY_NOTE = "Matched by the words only: the search by meaning is not answering."


@dataclass(frozen=True)
class Found:
    """The results of one search, and what the picture lookup for its topic needs."""

    query: Query
    results: SearchResults
    vector: np.ndarray | None = None
    """The topic's vector in the picture cache's embedding space, handed on to `Finder.picture`;
    None when the cache embeds differently from the mail search (then it embeds for itself)."""
    embedding_error: EmbeddingError | None = None
    """Why the search by meaning was left out; the results then matched the words only."""

    @property
    def topic(self) -> str:
        """The free-text part of the query: what the picture shows ("" for filters only)."""
        return self.results.topic

    @property
    def words_only(self) -> bool:
        return self.embedding_error is not None


PictureStatus = Literal["ready", "over_budget", "failed", "database_down", "no_topic"]


@dataclass(frozen=True)
class Picture:
    """The outcome of a picture lookup: ``result`` when ``status`` is "ready", otherwise a
    ``note`` to show in its place."""

    topic: str
    status: PictureStatus
    result: CacheResult | None = None
    note: str = ""


class Finder:
    """Runs searches for the app. Thread-safe: `picture` may run on another thread than `find`."""

    def __init__(self, engine: Engine, embedder: Embedder | None, cache: SemanticCache | None, *,
                 embedding_error: EmbeddingError | None = None) -> None:
        """``embedder`` and ``cache`` are None (with the ``embedding_error`` why) when the model
        could not be started: then every search matches the words only, and no picture is made."""
        self.engine = engine
        self.embedder = embedder
        """The mail search's embedder: the model the messages were embedded with."""
        self.cache = cache
        self.embedding_error = embedding_error
        if (embedder is None or cache is None) and embedding_error is None:
            raise ValueError("Without an embedder and a cache, say why: embedding_error.")

    @property
    def shares_embedding(self) -> bool:
        """Whether the picture cache's vectors are the mail search's: the same model and size.
        An embedding template ("a picture of {}") names a space of its own, so it never does."""
        if self.embedder is None or self.cache is None:
            return False
        ours, theirs = self.embedder, self.cache.embedder
        return (ours.model, int(ours.dimensions)) == (theirs.model, int(theirs.dimensions))

    def find(self, owner: str, query_text: str, *, page: int = 0, page_size: int = 20, sort: str = "relevance",
             threads: bool = False) -> Found:
        """One page of ``owner``'s results for ``query_text``, in ``sort`` order (`mail.sql.SORTS`),
        one row per conversation with ``threads``.

        Raises QueryError (a sentence for the user) for a query that cannot match, and
        StorageError when the mail database is not answering. An embedding model that is not
        answering only leaves out the search by meaning (`Found.embedding_error`).
        """
        query = parse_query(query_text)
        vector, shared, error = self._topic_vector(query.topic)
        results = search(self.engine, owner, query, embedder=None if error else self.embedder,
                         limit=page_size, offset=max(0, page) * page_size, query_vector=vector, sort=sort,
                         threads=threads)
        return Found(query=query, results=results, vector=shared, embedding_error=error)

    def _topic_vector(self, topic: str) -> tuple[np.ndarray | None, np.ndarray | None, EmbeddingError | None]:
        """The topic's vector for the mail search, the same vector when the cache can take it,
        and the embedding error that left both out."""
        if not topic:
            return None, None, None
        if self.embedder is None:
            return None, None, self.embedding_error
        if self.shares_embedding:
            try:
                # Through the cache's embedding store: a phrase is sent to the model once, ever.
                vector = self.cache.embedding(topic)
                return vector, vector, None
            except EmbeddingError as exc:
                return None, None, exc
            except SemcacheError:
                pass  # the store refused the phrase or is not answering: ask the model directly
        try:
            vector = np.asarray(self.embedder.embed([topic]), dtype=np.float32)[0]
        except EmbeddingError as exc:
            return None, None, exc
        return vector, None, None

    def picture(self, owner: str, found: Found) -> Picture:
        """The picture for ``found``'s topic, asked for by ``owner`` (whose daily limit a new one
        counts against). Records one lookup in the cache's events; never raises."""
        topic = found.topic
        if not topic:
            return Picture(topic, "no_topic")
        if found.embedding_error is not None:  # not asked again: it has just failed
            return Picture(topic, "failed", note=f"No picture this time: {found.embedding_error}")
        try:
            result = self.cache.get(topic, vector=found.vector, user=owner)
        except BudgetExceeded as exc:
            return Picture(topic, "over_budget", note=f"No new picture: {exc}")
        except StorageError:
            return Picture(topic, "database_down", note="No picture this time: the image cache is not answering.")
        except SemcacheError as exc:
            return Picture(topic, "failed", note=f"No picture this time: {exc}")
        except Exception:
            log.exception("The picture lookup for %r failed", topic)
            return Picture(topic, "failed", note="No picture this time: something went wrong while making it.")
        return Picture(topic, "ready", result=result)

    def still_served(self, picture: Picture) -> bool:
        """Whether a picture already shown would still be served: False once a wrong-match verdict
        bans what it served for its topic (then a new lookup is due). Never raises: a cache that
        is not answering leaves the picture as it is."""
        if picture.result is None or self.cache is None:
            return True
        try:
            return not self.cache.banned(picture.result)
        except SemcacheError:
            return True

    def conversation(self, owner: str, message_pk: int) -> list[MessageView] | None:
        """The thread of one of ``owner``'s messages, oldest first; None when the message is not
        theirs (or gone)."""
        view = message(self.engine, owner, message_pk)
        if view is None:
            return None
        return thread(self.engine, owner, view.thread_id) or [view]
