"""What an operator does to a cache, beside its lookups: list and delete entries, record verdicts
("wrong match", "good match"), apply the size and age limits, and embed every entry with
another model.

    admin = CacheAdmin(cache)
    admin.mark_wrong("puppy", "dog")     # puppy is never served dog's picture again
    admin.entries(limit=50)

Database errors come out as `StorageError`, as from the cache itself.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, fields, replace, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
from sqlalchemy import Engine, Row

from semcache import store
from semcache.errors import BlobStoreError, GenerationError, InvalidTopic, StorageError
from semcache.interfaces import BlobStore, Embedder
from semcache.matching import EntryEvidence
from semcache.normalize import topic_key
from semcache.report import Totals, threshold_setting, totals

if TYPE_CHECKING:
    from semcache.cache import SemanticCache
    from semcache.eval import Pair, Recommendation


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
    serves_right: int = 0
    """Serves of this entry judged right ("good match")."""
    serves_wrong: int = 0
    """Serves of this entry judged wrong ("wrong match", bans)."""
    right_score: float | None = None
    wrong_score: float | None = None
    own_threshold: float | None = None
    """The threshold this entry is held to now (see `semcache.matching.entry_threshold`); None
    when the cache holds every entry to the space's threshold."""

    @property
    def evidence(self) -> EntryEvidence:
        return EntryEvidence(self.serves_right, self.serves_wrong, self.right_score, self.wrong_score)


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
        """Cached entries, newest first, with how often each was served, rightly and wrongly, and
        the threshold each is held to now."""
        with store.connect(self.cache.engine) as conn:
            rows = store.entries(conn, limit, offset)
        own = self._own_threshold()
        return [_entry(row, own) for row in rows]

    def entry(self, phrase: str) -> Entry | None:
        with store.connect(self.cache.engine) as conn:
            row = store.entry(conn, self._key(phrase))
        return None if row is None else _entry(row, self._own_threshold())

    def _own_threshold(self) -> Callable[[EntryEvidence], float] | None:
        cache = self.cache
        if not cache.entry_thresholds:
            return None
        threshold, bound = cache.threshold, cache.entry_error_bound
        return lambda evidence: cache.own_threshold(evidence, threshold, bound)

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

    def regenerate(self, phrase: str, *, actor: str | None = None) -> Regenerated:
        """Make the entry of ``phrase`` a different picture and put it in place of the old one.

        It costs one generation, counted as every generation is: reserved against the daily
        limits first (``actor``'s, as a miss is its user's) and recorded as a ``generated`` event
        of relation ``regenerated`` with its cost, so spending and savings stay the sum of the
        events. A generator with a ``variant`` argument (the offline one) is asked for the next
        picture not yet made for the entry; any other makes a new one. The entry is changed in
        one statement only once the new picture is stored: a failure leaves the old picture
        and stores nothing (a reservation is given back when nothing can have been billed).
        Raises InvalidTopic when nothing is cached for ``phrase``, BudgetExceeded, and
        GenerationError / BlobStoreError / StorageError as a lookup does.
        """
        cache = self.cache
        started = time.perf_counter()
        with store.connect(cache.engine) as conn:
            row = store.entry(conn, self._key(phrase))
            if row is None:
                raise InvalidTopic(f"No picture is cached for \u201c{phrase}\u201d; a search for it makes one.")
            variant = max(1, store.pictures_made(conn, row.id))
        price = float(cache.generator.price_usd)
        day = cache.guard.reserve(actor, price) if cache.guard is not None else None
        image = blob_key = None
        t = time.perf_counter()
        try:
            picks_by_meaning = getattr(cache.generator, "embedder", None) is not None
            vector = cache._vector_for_generator(cache.embedding(row.phrase)) if picks_by_meaning else None
            if _takes_variant(cache.generator):
                image = cache.generator.generate(row.phrase, vector, variant=variant)
            else:
                image = cache.generator.generate(row.phrase, vector)
            generate_ms = (time.perf_counter() - t) * 1000.0
            t = time.perf_counter()
            blob_key = cache.blobs.put(image.png, "image/png")
            blob_ms = (time.perf_counter() - t) * 1000.0
            with store.begin(cache.engine) as conn:
                if not store.replace_picture(conn, row.id, row.blob_key, blob_key=blob_key, size=len(image.png),
                                             generator=cache.generator.name, detail=image.detail, cost=price):
                    raise GenerationError(f"The picture of \u201c{row.phrase}\u201d was deleted or replaced while "
                                          "the new one was made; nothing was changed.")
                store.record_event(conn, {
                    "query": row.phrase[:1000], "key": row.key, "kind": "generated", "relation": REGENERATED,
                    "score": None, "entry_id": row.id, "served_key": row.key, "distance": None,
                    "threshold": None, "space_id": cache.space().id, "embedded": False, "embed_ms": None,
                    "search_ms": None, "generate_ms": generate_ms, "blob_ms": blob_ms,
                    "total_ms": (time.perf_counter() - started) * 1000.0, "spent": price, "saved": 0.0})
        except BaseException as exc:
            if blob_key is not None and blob_key != row.blob_key:
                collect_blobs(cache.engine, cache.blobs, [blob_key])
            billed = image is not None or getattr(exc, "may_have_been_billed", False)
            if day is not None and not billed:
                try:
                    cache.guard.release(actor, price, day)
                except StorageError:
                    pass
            raise
        if blob_key != row.blob_key:
            collect_blobs(cache.engine, cache.blobs, [row.blob_key])
        entry = self.entry(row.phrase)
        assert entry is not None
        return Regenerated(entry=entry, previous_detail=row.detail, cost_spent_usd=price, variant=variant)

    # ------------------------------------------------------------------ verdicts

    def mark_wrong(self, query: str, served_key: str, *, distance: float | None = None, actor: str = "",
                   note: str = "") -> None:
        """Record that ``query`` must not be served by the entry ``served_key``, nor by any entry
        showing the same picture; it never will be. With entry thresholds, ``served_key``'s own
        threshold tightens below this serve's score."""
        self._verdict(query, served_key, "wrong", distance, actor, note)

    def mark_right(self, query: str, served_key: str, *, distance: float | None = None, actor: str = "",
                   note: str = "") -> None:
        """Record that serving ``served_key`` for ``query`` was right (evidence for tuning, and for
        ``served_key``'s own threshold)."""
        self._verdict(query, served_key, "right", distance, actor, note)

    def _verdict(self, query: str, served_key: str, verdict: str, distance: float | None, actor: str,
                 note: str) -> None:
        """The verdict, at the pair's distance (given, or from the two phrases' cached vectors)
        and the score the matcher makes of it: what the entry's own threshold learns from."""
        query_key, entry_key = self._key(query), self._key(served_key)
        space = self.cache.space()
        with store.begin(self.cache.engine) as conn:
            if distance is None:
                distance = store.pair_distance(conn, space, query_key, entry_key)
            score = None
            if distance is not None:
                score = self.cache.matcher.match(query_key, entry_key, float(distance)).score
                score = score if math.isfinite(score) else None
            store.record_verdict(conn, query_key, entry_key, verdict, distance, note, actor, score)

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
                progress: Callable[[int, int], None] | None = None, pairs: Sequence[Pair] | None = None,
                max_false_hit_rate: float = 0.01, apply: bool = False, accept_thin: bool = False,
                actor: str = "reembed") -> Reembedded:
        """Embed every cached phrase with ``embedder`` into its own space (kept apart from every
        other model's vectors), and propose a threshold for that space (`propose_threshold`, from
        ``pairs`` or else the recorded verdicts). Phrases that space already holds are not sent to
        the model again. The proposal is applied only with ``apply`` (and, when its evidence is
        thin, ``accept_thin``). Point the app at the new model afterwards.
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
        proposal = self.propose_threshold(embedder, pairs=pairs, max_false_hit_rate=max_false_hit_rate)
        if apply:
            proposal = self.apply_proposal(proposal, embedder, accept_thin=accept_thin, actor=actor)
        return Reembedded(embedded=done, proposal=proposal)

    def propose_threshold(self, embedder: Embedder, *, pairs: Sequence[Pair] | None = None,
                          max_false_hit_rate: float = 0.01) -> ThresholdProposal:
        """The threshold for ``embedder``'s space that keeps the false-hit rate of judged pairs
        within ``max_false_hit_rate``: ``pairs`` (a pairs file's), or else the recorded verdicts
        (each query and the entry it was served, embedded in that space). Phrases the space holds
        are not embedded again. Nothing is stored."""
        from semcache import eval as evaluation
        from semcache.cache import embed

        source = "pairs file" if pairs is not None else "recorded verdicts"
        if pairs is None:
            pairs = evaluation.feedback_pairs(self.cache.engine)
        space = self.cache.space(embedder)
        scored = evaluation.score_pairs(pairs, _SpaceVectors(self.cache.engine, space, embedder, embed),
                                        self.cache.matcher, max_topic_chars=self.cache.max_topic_chars)
        current = threshold_setting(self.cache.engine, self.cache.default_threshold, model=embedder.model,
                                    dimensions=int(embedder.dimensions))
        return ThresholdProposal(model=embedder.model, dimensions=int(embedder.dimensions), source=source,
                                 pairs=len(scored.pairs), current=current.value,
                                 recommendation=evaluation.recommendation(scored, max_false_hit_rate),
                                 max_false_hit_rate=max_false_hit_rate)

    def apply_proposal(self, proposal: ThresholdProposal, embedder: Embedder, *, accept_thin: bool = False,
                       actor: str = "reembed") -> ThresholdProposal:
        """Store the proposed threshold for ``embedder``'s space; not when there is none, nor when
        its evidence is thin (fewer negatives than it needs) unless ``accept_thin``."""
        rec = proposal.recommendation
        if rec is None or (rec.thin and not accept_thin):
            return proposal
        self.cache.set_threshold(rec.threshold, actor=actor, embedder=embedder)
        return replace(proposal, applied=True)


@dataclass(frozen=True)
class ThresholdProposal:
    """A threshold proposed for an embedding space, with the evidence behind it."""

    model: str
    dimensions: int
    source: str
    """``recorded verdicts`` or ``pairs file``."""
    pairs: int
    current: float
    """The space's threshold in force when it was proposed (its own, else the cache's default)."""
    recommendation: "Recommendation | None"
    """None without pairs that may not share a picture to judge by."""
    max_false_hit_rate: float
    applied: bool = False

    def lines(self) -> list[str]:
        """The proposal in words, for a terminal."""
        space = f"{self.model} ({self.dimensions} dims)"
        rec = self.recommendation
        if rec is None:
            return [f"no threshold proposed for {space}: {self.pairs} judged pairs from the {self.source}, none "
                    f"that may not share a picture; it keeps {self.current:.3f}"]
        out = [f"proposed threshold for {space}: {rec.threshold:.3f} (now {self.current:.3f}), false hits "
               f"<= {self.max_false_hit_rate:.1%} on {rec.positives} positives and {rec.negatives} negatives "
               f"from the {self.source}",
               f"  at {rec.threshold:.3f}: hit rate {_rate(rec.hits, rec.positives, rec.hit_interval)}, "
               f"false-hit rate {_rate(rec.false_hits, rec.negatives, rec.false_hit_interval)}"]
        if rec.thin:
            out.append(f"  the evidence is thin: fewer than {rec.min_negatives} negatives")
        out.append("  applied" if self.applied else
                   "  not applied: run again with --apply" + (" --accept-thin" if rec.thin else ""))
        return out

    def as_dict(self) -> dict:
        return {"model": self.model, "dimensions": self.dimensions, "source": self.source, "pairs": self.pairs,
                "current": self.current, "max_false_hit_rate": self.max_false_hit_rate, "applied": self.applied,
                "recommendation": None if self.recommendation is None else self.recommendation.as_dict()}


@dataclass(frozen=True)
class Reembedded:
    embedded: int
    """How many phrases were embedded into the new space."""
    proposal: ThresholdProposal


def _rate(count: int, total: int, interval: tuple[float, float] | None) -> str:
    if not total or interval is None:
        return "–"
    return f"{count}/{total} = {count / total:.1%} (95% {interval[0]:.1%}..{interval[1]:.1%})"


class _SpaceVectors:
    """An embedder for scoring pairs in ``space``: phrases the space holds come from it, the
    others from ``embedder`` (not stored)."""

    def __init__(self, engine: Engine, space: store.Space, embedder: Embedder, embed: Callable) -> None:
        self.engine, self.space, self.embedder, self._embed = engine, space, embedder, embed
        self.model, self.dimensions = embedder.model, embedder.dimensions

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        with store.connect(self.engine) as conn:
            known = store.embeddings(conn, self.space, texts)
        missing = [t for t in texts if t not in known]
        if missing:
            known.update(zip(missing, self._embed(self.embedder, missing)))
        return np.asarray([known[t] for t in texts], dtype=np.float32)


REGENERATED = "regenerated"
"""The ``relation`` of the ``generated`` event a regeneration records."""


@dataclass(frozen=True)
class Regenerated:
    """What `CacheAdmin.regenerate` did."""

    entry: Entry
    """The entry with its new picture."""
    previous_detail: str
    """How the old picture was made."""
    cost_spent_usd: float
    variant: int
    """Which picture this is for the entry (1: the first after the original)."""


def _takes_variant(generator: object) -> bool:
    try:
        return "variant" in inspect.signature(generator.generate).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return False


def _entry(row: Row, own_threshold: Callable[[EntryEvidence], float] | None = None) -> Entry:
    entry = Entry(**{**row._mapping, "cost_usd": float(row.cost_usd)})
    if own_threshold is None:
        return entry
    return replace(entry, own_threshold=own_threshold(entry.evidence))


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
