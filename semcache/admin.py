"""What an operator does to a cache, beside its lookups: list and delete entries, record verdicts
("wrong match", "good match"), apply the size and age limits, and embed every entry with
another model.

    admin = CacheAdmin(cache)
    admin.mark_wrong("puppy", "dog")     # puppy is never served dog's picture again
    admin.entries(limit=50)

Database errors come out as `StorageError`, as from the cache itself.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
from sqlalchemy import Engine, Row

from semcache import store
from semcache.errors import BlobStoreError
from semcache.interfaces import BlobStore, Embedder
from semcache.normalize import topic_key
from semcache.report import Totals, totals

if TYPE_CHECKING:
    from semcache.cache import SemanticCache


@dataclass(frozen=True)
class Entry:
    id: int
    key: str
    phrase: str
    blob_key: str
    size_bytes: int
    generator: str
    detail: str
    cost_usd: float
    created_at: datetime
    times_served: int
    last_served_at: datetime | None


@dataclass(frozen=True)
class Stats(Totals):
    """`report.Totals` and the cache's configuration, for the `stats` command."""

    embedding_model: str = ""
    dimensions: int = 0
    threshold: float = 0.0


def collect_blobs(engine: Engine, blobs: BlobStore, blob_keys: Sequence[str]) -> None:
    """Delete blobs no entry refers to any more. A failure leaves an orphan blob, never a
    dangling entry."""
    if not blob_keys:
        return
    with store.connect(engine) as conn:
        used = store.blobs_in_use(conn, blob_keys)
    for blob_key in set(blob_keys) - used:
        try:
            blobs.delete(blob_key)
        except BlobStoreError:
            pass


def evict(engine: Engine, blobs: BlobStore, *, max_entries: int | None, max_age: timedelta | None) -> int:
    """Apply ``max_entries`` (least recently served go first) and ``max_age``; returns how many
    entries were removed."""
    with store.begin(engine) as conn:
        removed = store.evict(conn, max_age=max_age, max_entries=max_entries)
    collect_blobs(engine, blobs, removed)
    return len(removed)


class CacheAdmin:
    """The operator's side of ``cache`` (its engine, blob store, key rules and limits)."""

    def __init__(self, cache: SemanticCache) -> None:
        self.cache = cache

    def _key(self, phrase: str) -> str:
        return topic_key(phrase, self.cache.max_topic_chars)

    # ------------------------------------------------------------------ entries

    def entries(self, *, limit: int = 100, offset: int = 0) -> list[Entry]:
        """Cached entries, newest first, with how often each was served."""
        with store.connect(self.cache.engine) as conn:
            return [_entry(row) for row in store.entries(conn, limit, offset)]

    def entry(self, phrase: str) -> Entry | None:
        with store.connect(self.cache.engine) as conn:
            row = store.entry(conn, self._key(phrase))
        return None if row is None else _entry(row)

    def image(self, blob_key: str) -> bytes:
        return self.cache.blobs.get(blob_key)

    def delete(self, phrase: str) -> bool:
        """Delete the entry for ``phrase`` (and its image, unless another entry shares it)."""
        with store.begin(self.cache.engine) as conn:
            blob = store.delete_key(conn, self._key(phrase))
        if blob is None:
            return False
        collect_blobs(self.cache.engine, self.cache.blobs, [blob])
        return True

    def evict(self) -> int:
        """Apply the cache's ``max_entries`` and ``max_age`` now; returns how many entries went."""
        return evict(self.cache.engine, self.cache.blobs, max_entries=self.cache.max_entries,
                     max_age=self.cache.max_age)

    # ------------------------------------------------------------------ verdicts

    def mark_wrong(self, query: str, served_key: str, *, distance: float | None = None, actor: str = "",
                   note: str = "") -> None:
        """Record that ``query`` must not be served by the entry ``served_key``; it never will be."""
        self._verdict(query, served_key, "wrong", distance, actor, note)

    def mark_right(self, query: str, served_key: str, *, distance: float | None = None, actor: str = "",
                   note: str = "") -> None:
        """Record that serving ``served_key`` for ``query`` was right (evidence for tuning)."""
        self._verdict(query, served_key, "right", distance, actor, note)

    def _verdict(self, query: str, served_key: str, verdict: str, distance: float | None, actor: str,
                 note: str) -> None:
        query_key, entry_key = self._key(query), self._key(served_key)
        with store.begin(self.cache.engine) as conn:
            store.record_verdict(conn, query_key, entry_key, verdict, distance, note, actor)

    def feedback(self) -> list[Row]:
        """Every verdict (``query_key, entry_key, verdict, distance, note, actor, created_at``), newest first."""
        with store.connect(self.cache.engine) as conn:
            return store.feedback(conn)

    # ------------------------------------------------------------------ figures

    def recent_events(self, limit: int = 50) -> list[Row]:
        with store.connect(self.cache.engine) as conn:
            return store.recent_events(conn, limit)

    def stats(self) -> Stats:
        counts = totals(self.cache.engine)
        embedder = self.cache.embedder
        return Stats(**{f.name: getattr(counts, f.name) for f in fields(Totals)},
                     embedding_model=embedder.model, dimensions=embedder.dimensions,
                     threshold=self.cache.threshold)

    # ------------------------------------------------------------------ model switch

    def reembed(self, embedder: Embedder, *, batch_size: int = 128,
                progress: Callable[[int, int], None] | None = None) -> int:
        """Embed every cached phrase with ``embedder`` into its own space (kept apart from every
        other model's vectors) and return how many phrases were embedded. Phrases that space
        already holds are not sent to the model again. Point the app at the new model afterwards.
        """
        from semcache.cache import embed  # the cache imports this module

        engine = self.cache.engine
        space = self.cache.space(embedder)
        with store.connect(engine) as conn:
            todo = store.unindexed(conn, space)
        done = 0
        for batch in _batches(todo, batch_size):
            with store.begin(engine) as conn:
                known = store.embeddings(conn, space, [row.key for row in batch])
                missing = [row.key for row in batch if row.key not in known]
                if missing:
                    for key, vector in zip(missing, embed(embedder, missing)):
                        known[key] = vector
                for row in batch:
                    store.attach_embedding(conn, space, row.key, np.asarray(known[row.key], dtype=np.float32),
                                           row.id)
            done += len(batch)
            if progress:
                progress(done, len(todo))
        return done


def _entry(row: Row) -> Entry:
    return Entry(**{**row._mapping, "cost_usd": float(row.cost_usd)})


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
