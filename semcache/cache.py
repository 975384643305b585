"""The semantic cache: an image per topic phrase, served again for phrases close in meaning.

`SemanticCache` decides: the lookup (`get`), the matcher's choice among the nearest entries, one
generation per key across threads and processes (claims with leases), and the threshold. What
an operator does to the cache (entries, verdicts, eviction, re-embedding) is `semcache.admin`;
every statement is in `semcache.store`.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal, Sequence

import numpy as np
from sqlalchemy import Connection, Engine

from semcache import store
from semcache.admin import collect_blobs, evict
from semcache.errors import BlobNotFound, EmbeddingError, GenerationError, SemcacheError, StorageError
from semcache.budget import CostGuard
from semcache.interfaces import BlobStore, Embedder, GeneratedImage, Generator
from semcache.matching import (
    DEFAULT_THRESHOLD, ENTRY_LOOSEN_CAP, EXACT, EntryEvidence, Match, Matcher, check_error_bound, entry_threshold,
)
from semcache.normalize import check_threshold, clean, topic_key
from semcache.store import Space
from semcache.vectors import HNSW_HALFVEC_MAX_DIMENSIONS

Kind = Literal["exact", "semantic", "generated"]

log = logging.getLogger(__name__)

_FIRST_POLL_SECONDS = 0.02
_MAX_POLL_SECONDS = 0.5
"""How often a lookup waiting for another one's generation of its key looks again: doubling
from the first delay up to the second."""
_CLAIMED, _HELD, _AGAIN = object(), object(), object()


@dataclass(frozen=True)
class Timings:
    """Milliseconds spent in each step of one lookup; None where the step did not run."""

    embed_ms: float | None = None
    search_ms: float | None = None
    generate_ms: float | None = None
    blob_ms: float | None = None
    total_ms: float = 0.0


@dataclass(frozen=True)
class CacheResult:
    """What `SemanticCache.get` answers.

    ``kind`` says how the image was obtained: ``exact`` (the same phrase, after normalisation, was
    cached), ``semantic`` (a cached phrase within the threshold answered) or ``generated``.
    ``served_key`` is the cached phrase that answered; ``distance`` its cosine distance from the
    topic (0.0 for exact hits, None for generated images).
    """

    kind: Kind
    topic: str
    key: str
    served_key: str
    distance: float | None
    threshold: float
    entry_id: int
    blob_key: str
    image: bytes | None
    detail: str
    cost_spent_usd: float
    cost_saved_usd: float
    embedded: bool
    """Whether the embedding model was called for this lookup."""
    timings: Timings = field(default_factory=Timings)
    relation: str | None = None
    """Why the entry was served: ``exact`` (same key or dictionary form), a WordNet relation
    (``synonym``, ``kind``, ...) or ``unknown`` (the distance alone); None when generated."""
    score: float | None = None
    """The distance as the relation scaled it: what was held to the threshold."""

    @property
    def hit(self) -> bool:
        return self.kind != "generated"


@dataclass(frozen=True)
class Neighbour:
    """A cached phrase near a topic, as the settings page previews it."""

    entry_id: int
    key: str
    distance: float
    blob_key: str
    banned: bool
    would_serve: bool
    relation: str = "unknown"
    score: float | None = None
    threshold: float | None = None
    """The threshold this entry is held to (its own, learned from verdicts, when the cache keeps
    one per entry); None when the preview ran at 0 (the exact path alone)."""


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class SemanticCache:
    """Images for topic phrases, cached by meaning in PostgreSQL + pgvector.

    The collaborators are passed in: ``engine`` (SQLAlchemy, on a database holding the cache's
    own schema, `semcache.schema.upgrade(engine)`), an ``embedder``, a ``generator`` and a
    ``blobs`` store. Each embedding space (model + dimensions) has its own threshold, since
    distances of different models are not comparable: ``default_threshold`` is used in a space
    until one is stored for it; the stored one is read on every lookup (in the lookup's one round
    trip), so a change made in one process applies in all.
    A key being generated is claimed for ``generation_lease``, renewed every third of it while
    the generator runs; a claim whose process died is taken over once its lease runs out.
    With ``entry_thresholds``, each entry is held to its own threshold, learned from the verdicts
    on its serves (`semcache.matching.entry_threshold`): tighter after a wrong serve, looser with
    confirmed good ones while its estimated share of wrong serves stays within the error bound
    (``entry_error_bound`` until one is stored, `set_entry_error_bound`). Off, every entry is held
    to the space's threshold.
    """

    def __init__(
        self,
        engine: Engine,
        embedder: Embedder,
        generator: Generator,
        blobs: BlobStore,
        *,
        default_threshold: float = DEFAULT_THRESHOLD,
        max_topic_chars: int = 200,
        candidates: int = 10,
        max_entries: int | None = None,
        max_age: timedelta | None = None,
        ef_search: int | None = 100,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 128,
        matcher: Matcher | None = None,
        guard: CostGuard | None = None,
        generation_lease: timedelta = timedelta(seconds=10),
        entry_thresholds: bool = False,
        entry_error_bound: float = 0.05,
    ) -> None:
        self.engine = engine
        self.embedder = embedder
        self.generator = generator
        self.blobs = blobs
        self.default_threshold = check_threshold(default_threshold)
        self.max_topic_chars = max_topic_chars
        self.candidates = candidates
        self.max_entries = max_entries
        self.max_age = max_age
        self.ef_search = ef_search
        self.hnsw_m = int(hnsw_m)
        self.hnsw_ef_construction = int(hnsw_ef_construction)
        self.matcher = matcher or Matcher.plain()
        self.guard = guard
        self.entry_thresholds = bool(entry_thresholds)
        self.default_entry_error_bound = check_error_bound(entry_error_bound)
        self._lease_seconds = generation_lease.total_seconds()
        if not self._lease_seconds > 0:
            raise ValueError(f"generation_lease must be positive, not {generation_lease!r}.")
        self._leases = _Leases(engine, self._lease_seconds)
        self._space: Space | None = None
        self._space_lock = threading.Lock()

    # ------------------------------------------------------------------ the threshold

    @property
    def threshold(self) -> float:
        """The threshold in force in the space in use: the one stored for it, else ``default_threshold``."""
        with store.connect(self.engine) as conn:
            row = store.stored_threshold(conn, self.embedder.model, int(self.embedder.dimensions))
        return store.threshold_value(None if row is None else row.value, self.default_threshold)

    def set_threshold(self, value: float, *, actor: str | None = None, embedder: Embedder | None = None) -> float:
        """Store the threshold of the space in use (or of ``embedder``'s space) for every process;
        it applies from their next lookup in that space. Other spaces keep theirs."""
        value = check_threshold(value)
        space = self.space(embedder)
        with store.begin(self.engine) as conn:
            store.set_threshold(conn, space, value, actor)
        return value

    @property
    def entry_error_bound(self) -> float:
        """The largest estimated share of wrong serves at which an entry's own threshold may
        loosen: the stored one, else ``entry_error_bound`` as given."""
        with store.connect(self.engine) as conn:
            stored = store.settings(conn, [store.ENTRY_ERROR_BOUND_SETTING]).get(store.ENTRY_ERROR_BOUND_SETTING)
        return self.default_entry_error_bound if stored is None else float(stored)

    def set_entry_error_bound(self, value: float, *, actor: str | None = None) -> float:
        """Store the error bound of the entries' own thresholds for every process (0 to 1)."""
        value = check_error_bound(value)
        with store.begin(self.engine) as conn:
            store.set_setting(conn, store.ENTRY_ERROR_BOUND_SETTING, json.dumps(value), actor)
        return value

    def own_threshold(self, evidence: EntryEvidence, threshold: float, error_bound: float) -> float:
        """The threshold an entry with ``evidence`` is held to now (the space's own when entries
        keep none)."""
        if not self.entry_thresholds:
            return threshold
        return entry_threshold(threshold, evidence, error_bound)

    def banned(self, result: CacheResult) -> bool:
        """Whether a wrong-match verdict recorded since bans what ``result`` served for its topic:
        its entry, or another entry with the same picture. Exact hits and new pictures are the
        topic's own, never banned."""
        if result.kind != "semantic":
            return False
        with store.connect(self.engine) as conn:
            return store.is_banned(conn, result.key, result.served_key, result.blob_key)

    # ------------------------------------------------------------------ lookups

    def get(self, topic: str, *, vector: np.ndarray | Sequence[float] | None = None,
            threshold: float | None = None, fetch_image: bool = True, user: str | None = None) -> CacheResult:
        """The image for ``topic``: exact hit, semantic hit, or newly generated.

        ``vector`` is the topic's embedding in this cache's space, for a caller that already has
        it (see `embedding`): the lookup then never calls the embedding model, and stores the
        vector in the embedding cache as if it had. ``user`` is who asks: a new picture counts
        against their daily limit (see `guard`).
        Raises InvalidTopic / InvalidThreshold for bad input (ValueError for a vector of the wrong
        shape), BudgetExceeded when a new picture would break a daily limit, and EmbeddingError,
        GenerationError, BlobStoreError or StorageError when a service fails (nothing half-made
        is stored).
        """
        started = time.perf_counter()
        key = topic_key(topic, self.max_topic_chars)
        if threshold is not None:
            threshold = check_threshold(threshold)
        state = _Lookup(topic=clean(topic), key=key, started=started, canon=self.matcher.canonical(key), user=user)
        if vector is not None:
            state.vector = self._check_vector(vector)
        try:
            try:
                result = self._get(state, threshold, fetch_image)
            except StorageError as exc:
                if not exc.connection_lost:
                    raise
                # The database restarted under this lookup: once more on a new connection, with
                # what was already paid for (the vector, the picture, its blob) kept in ``state``.
                result = self._get(state, threshold, fetch_image)
        except StorageError:
            raise  # the database is what failed: no event could say so
        except SemcacheError as exc:
            self._record_error(state, threshold, exc)
            raise
        if result.kind == "generated" and self.max_entries is not None:
            evict(self.engine, self.blobs, max_entries=self.max_entries, max_age=self.max_age)
        return result

    def _check_vector(self, vector: np.ndarray | Sequence[float]) -> np.ndarray:
        try:
            array = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"The topic's vector must be a sequence of numbers: {exc}") from exc
        if array.shape != (self.embedder.dimensions,):
            raise ValueError(f"The topic's vector has shape {array.shape}; this cache's embedding model "
                             f"({self.embedder.model}) makes vectors of {self.embedder.dimensions} dimensions.")
        if not np.isfinite(array).all() or not np.any(array):
            raise ValueError("The topic's vector must be finite and not all zeros.")
        return array

    def _get(self, state: "_Lookup", threshold: float | None, fetch_image: bool) -> CacheResult:
        space = self.space()
        t = time.perf_counter()
        with store.connect(self.engine) as conn:
            # One round trip: the space's stored threshold, the exact entry, and (only when there is no
            # exact entry) the phrase's cached embedding.
            row = store.lookup(conn, state.key, state.canon, space, self.max_age)
            state.search_ms += _ms(t)
            if threshold is None:
                threshold = store.threshold_value(row.stored_threshold, self.default_threshold)
            state.threshold = threshold
            state.error_bound = store.threshold_value(row.stored_error_bound, self.default_entry_error_bound)
            if row.id is not None:
                hit = self._serve(conn, state, "exact", row.id, row.key, Match(EXACT, 0.0, 0.0), row.blob_key,
                                  row.detail, fetch_image)
                if hit is not None:
                    return hit

            # With an exact entry in the row, its vector was not read (the entry's blob was gone).
            vector = self._embedding(conn, space, state, row.vector, look=row.id is not None)
            hit = self._semantic_hit(conn, state, space, vector, threshold, fetch_image)
            if hit is not None:
                return hit
            conn.commit()  # the new embedding, before another connection generates
        return self._generate(state, space, vector, threshold, fetch_image)

    def _semantic_hit(self, conn: Connection, state: "_Lookup", space: Space, vector: np.ndarray,
                      threshold: float, fetch_image: bool, *, claimed: bool = False) -> CacheResult | None:
        """The nearest allowed entry within ``threshold``, served; None when there is none."""
        if threshold <= 0:
            return None
        t = time.perf_counter()
        best = self._nearest(conn, space, vector, state.key, threshold, state.error_bound)
        state.search_ms += _ms(t)
        if best is None:
            return None
        row, match = best
        kind: Kind = "exact" if match.relation == EXACT else "semantic"
        return self._serve(conn, state, kind, row.entry_id, row.key, match, row.blob_key, row.detail, fetch_image,
                           claimed=claimed)

    def _serve(self, conn: Connection, state: "_Lookup", kind: Kind, entry_id: int, served_key: str,
               match: Match, blob_key: str, detail: str, fetch_image: bool, *,
               claimed: bool = False) -> CacheResult | None:
        """Record a hit and return it; None when the entry's blob is gone (the entry is dropped).
        With ``claimed``, the lookup's claim on the key is removed in the same transaction."""
        image = None
        if fetch_image:
            t = time.perf_counter()
            try:
                image = self.blobs.get(blob_key)
            except BlobNotFound:
                conn.rollback()
                store.delete_entry(conn, entry_id)
                conn.commit()
                return None
            state.blob_ms = (state.blob_ms or 0.0) + _ms(t)
        if claimed:
            store.unclaim(conn, state.canon, state.owner)
        saved = float(self.generator.price_usd)
        result = CacheResult(
            kind=kind, topic=state.topic, key=state.key, served_key=served_key, distance=match.distance,
            threshold=state.threshold, entry_id=entry_id, blob_key=blob_key, image=image, detail=detail,
            cost_spent_usd=0.0, cost_saved_usd=saved, embedded=state.embedded, timings=state.timings(),
            relation=match.relation, score=match.score,
        )
        self._record(conn, result)
        conn.commit()
        return result

    def _generate(self, state: "_Lookup", space: Space, vector: np.ndarray, threshold: float,
                  fetch_image: bool) -> CacheResult:
        """The miss path. One generation per key across threads and processes, with no pooled
        connection held while the generator runs: the key is claimed in a committed row with a
        lease (`_claim`), generated with no connection checked out, and stored with its claim
        removed in one short transaction (`_store`). Whoever finds the key claimed waits between
        short checks, holding no connection, and then finds the entry made, or claims the key
        itself when the claimer failed or its lease ran out (a process that died)."""
        if state.owner is None:
            state.owner = secrets.token_hex(16)
        price = float(self.generator.price_usd)
        delay = _FIRST_POLL_SECONDS
        while True:
            outcome = self._claim(state, space, vector, threshold, fetch_image, price)
            if isinstance(outcome, CacheResult):
                return outcome
            if outcome is _HELD:
                delay = self._wait_for_claim(state, delay)
                continue
            if outcome is _CLAIMED:
                result = self._make(state, space, vector, threshold, fetch_image, price)
                if result is not None:
                    return result
            # _AGAIN: an entry's blob was gone, or another lookup stored the key first: look again.

    def _claim(self, state: "_Lookup", space: Space, vector: np.ndarray, threshold: float, fetch_image: bool,
               price: float) -> CacheResult | object:
        """Claim the key, look a second time, reserve the budget, all in one short transaction:
        a hit (the claim undone), `_CLAIMED` (committed), `_HELD` (by another lookup) or `_AGAIN`."""
        with store.connect(self.engine) as conn:
            t = time.perf_counter()
            # Keyed by the dictionary form: "dog" and "dogs" wait for each other.
            claimed = store.claim(conn, state.canon, state.key, state.owner, self._lease_seconds)
            if not claimed:
                state.search_ms += _ms(t)
                conn.rollback()
                return _HELD
            # Looked at after the claim: a claimer that finished committed its entry with its claim's removal.
            row = store.any_entry(conn, state.key, state.canon)
            state.search_ms += _ms(t)
            if row is not None and row.key != state.key and not self._is_fresh(row.created_at):
                row = None  # another form's stale entry: it ages out on its own
            if row is not None:
                if self._is_fresh(row.created_at):
                    hit = self._serve(conn, state, "exact", row.id, row.key, Match(EXACT, 0.0, 0.0), row.blob_key,
                                      row.detail, fetch_image, claimed=True)
                    return _AGAIN if hit is None else hit
                state.stale_id, state.stale_blob = row.id, row.blob_key  # replaced when the new one is stored
            hit = self._semantic_hit(conn, state, space, vector, threshold, fetch_image, claimed=True)
            if hit is not None:
                return hit
            day = state.reserved
            if self.guard is not None and day is None:
                day = self.guard.reserve(state.user, price, conn=conn)
            conn.commit()
        state.reserved = day
        return _CLAIMED

    def _wait_for_claim(self, state: "_Lookup", delay: float) -> float:
        """Sleep, holding no connection, until the key's claim is gone or its lease ran out; the
        next delay (backing off up to `_MAX_POLL_SECONDS`)."""
        while True:
            time.sleep(delay)
            delay = min(delay * 2, _MAX_POLL_SECONDS)
            with store.connect(self.engine) as conn:
                held = store.held(conn, state.canon)
            if not held:
                return delay

    def _make(self, state: "_Lookup", space: Space, vector: np.ndarray, threshold: float, fetch_image: bool,
              price: float) -> CacheResult | None:
        """Generate and write the blob with no connection checked out (the claim's lease renewed
        meanwhile), then store the entry. A failure removes the claim and stores nothing; the
        reservation is given back only when nothing can have been billed."""
        assert state.owner is not None
        self._leases.hold(state.owner)
        try:
            if state.image is None:
                t = time.perf_counter()
                try:
                    state.image = self.generator.generate(state.topic, self._vector_for_generator(vector))
                except GenerationError:
                    raise
                except Exception as exc:  # a generator that broke its contract still must not half-store
                    raise GenerationError(f"The image generator failed: {exc}") from exc
                finally:
                    state.generate_ms = _ms(t)
            if state.blob_key is None:
                t = time.perf_counter()
                state.blob_key = self.blobs.put(state.image.png, "image/png")
                state.blob_ms = _ms(t)
            result = self._store(state, space, vector, threshold, fetch_image, price)
        except StorageError as exc:
            self._leases.drop(state.owner)
            if not exc.connection_lost:
                self._abandon(state, price, refund=False)
            # else: the lookup is retried on a new connection and finds its claim still its own.
            raise
        except BaseException as exc:
            self._leases.drop(state.owner)
            billed = state.image is not None or getattr(exc, "may_have_been_billed", False)
            self._abandon(state, price, refund=not billed)
            raise
        self._leases.drop(state.owner)
        if result is None:
            collect_blobs(self.engine, self.blobs, [state.blob_key])
            state.image = state.blob_key = None
        elif state.stale_blob and state.stale_blob != state.blob_key:
            collect_blobs(self.engine, self.blobs, [state.stale_blob])
        return result

    def _store(self, state: "_Lookup", space: Space, vector: np.ndarray, threshold: float, fetch_image: bool,
               price: float) -> CacheResult | None:
        """The entry, its vector and its event, and the claim removed, in one transaction: the row
        exists only with its blob. None when another lookup stored the key first (after this
        one's lease had run out)."""
        image, blob_key = state.image, state.blob_key
        assert image is not None and blob_key is not None
        with store.connect(self.engine) as conn:
            if state.stale_id is not None:
                store.delete_entry(conn, state.stale_id)
            entry_id = store.add_entry(conn, key=state.key, canon=state.canon, phrase=state.topic,
                                       blob_key=blob_key, size=len(image.png), generator=self.generator.name,
                                       detail=image.detail, cost=price)
            if entry_id is None:
                conn.rollback()
                store.unclaim(conn, state.canon, state.owner)
                conn.commit()
                state.stale_id = None
                return None
            store.attach_embedding(conn, space, state.key, vector, entry_id)
            result = CacheResult(
                kind="generated", topic=state.topic, key=state.key, served_key=state.key, distance=None,
                threshold=threshold, entry_id=entry_id, blob_key=blob_key,
                image=image.png if fetch_image else None, detail=image.detail, cost_spent_usd=price,
                cost_saved_usd=0.0, embedded=state.embedded, timings=state.timings(),
            )
            self._record(conn, result)
            store.unclaim(conn, state.canon, state.owner)
            conn.commit()
        return result

    def _abandon(self, state: "_Lookup", price: float, *, refund: bool) -> None:
        """Remove a failed lookup's claim (and give its reservation back when ``refund``). If the
        database cannot be reached, the claim's lease runs out on its own."""
        try:
            with store.begin(self.engine) as conn:
                store.unclaim(conn, state.canon, state.owner)
                if refund and state.reserved is not None and self.guard is not None:
                    self.guard.release(state.user, price, state.reserved, conn=conn)
        except StorageError:
            return
        if refund:
            state.reserved = None

    def _vector_for_generator(self, vector: np.ndarray) -> np.ndarray | None:
        """The topic's vector, for a generator that picks by meaning with the same embedding model
        (its ``embedder`` attribute); any other generator embeds for itself, if it needs to."""
        theirs = getattr(self.generator, "embedder", None)
        if theirs is None or (theirs.model, theirs.dimensions) != (self.embedder.model, self.embedder.dimensions):
            return None
        return vector

    # ------------------------------------------------------------------ embeddings and search

    def space(self, embedder: Embedder | None = None) -> Space:
        """The embedding space of ``embedder`` (by default this cache's, then kept), registered
        with its HNSW index on first use."""
        if embedder is not None:
            return self._register_space(embedder)
        if self._space is not None:
            return self._space
        with self._space_lock:
            if self._space is None:
                self._space = self._register_space(self.embedder)
        return self._space

    def _register_space(self, embedder: Embedder) -> Space:
        dims = int(embedder.dimensions)
        if dims > HNSW_HALFVEC_MAX_DIMENSIONS:
            raise SemcacheError(f"Embeddings of {dims} dimensions cannot be indexed; "
                                f"ask the model for {HNSW_HALFVEC_MAX_DIMENSIONS} or fewer.")
        with store.begin(self.engine) as conn:
            return store.register_space(conn, embedder.model, dims, hnsw_m=self.hnsw_m,
                                        hnsw_ef_construction=self.hnsw_ef_construction)

    def _embedding(self, conn: Connection, space: Space, state: "_Lookup",
                   stored: Sequence[float] | None = None, *, look: bool = False) -> np.ndarray:
        """The phrase's vector: ``stored`` (read with the exact lookup), from the embedding cache
        when ``look``, or else from the model, once, and then stored in the caller's transaction."""
        if look:
            t = time.perf_counter()
            stored = store.embedding(conn, space, state.key)
            state.search_ms += _ms(t)
        if stored is not None:
            return np.asarray(stored, dtype=np.float32)
        if state.vector is None:
            t = time.perf_counter()
            state.vector = embed(self.embedder, [state.key])[0]
            state.embed_ms = _ms(t)
            state.embedded = True
        vector = state.vector
        store.store_embedding(conn, space, state.key, vector)
        return vector

    def _candidates(self, conn: Connection, space: Space, vector: np.ndarray, key: str, k: int) -> list:
        return store.candidates(conn, space, vector, key, k, ef_search=self.ef_search, max_age=self.max_age)

    def _nearest(self, conn: Connection, space: Space, vector: np.ndarray, key: str,
                 threshold: float, error_bound: float) -> tuple[object, Match] | None:
        """The candidate the matcher scores best within its threshold, with its match."""
        rows = self._candidates(conn, space, vector, key, self.candidates)
        return self._choose(rows, key, threshold, error_bound)[0]

    def _choose(self, rows: Sequence, key: str, threshold: float,
                error_bound: float | None = None) -> tuple[tuple[object, Match] | None, dict]:
        """The best of ``rows`` (nearest first) for ``key`` at ``threshold`` (each entry at its own,
        with ``entry_thresholds``), and the matches it scored (by entry id). A row further than the
        largest threshold times the matcher's stretch cannot win, nor can one whose best possible
        score is already beaten: neither is looked up, and the rest stop there. A row beyond the
        stretch of its own pair (`Matcher.stretch_for`: two single words reach less far than two
        phrases) is passed over."""
        best: tuple[object, Match] | None = None
        scored: dict[int, Match] = {}
        if threshold <= 0:
            return None, scored
        stretch = self.matcher.stretch
        widest = threshold + ENTRY_LOOSEN_CAP if self.entry_thresholds else threshold
        bound = self.default_entry_error_bound if error_bound is None else error_bound
        for row in rows:
            if row.distance > widest * stretch or (best is not None and row.distance / stretch >= best[1].score):
                break
            if row.banned or row.key == key:
                continue
            own_stretch = self.matcher.stretch_for(key, row.key)
            if row.distance > widest * own_stretch or (best is not None
                                                        and row.distance / own_stretch >= best[1].score):
                continue  # this pair's relation cannot bring it within reach: not judged
            match = scored[row.entry_id] = self.matcher.match(key, row.key, row.distance)
            own = self.own_threshold(EntryEvidence.of(row), threshold, bound) if self.entry_thresholds else threshold
            if match.serves(own) and (best is None or match.score < best[1].score):
                best = (row, match)
        return best, scored

    def embedding(self, topic: str) -> np.ndarray:
        """The topic's vector in this cache's space: from the embedding cache, or from the model
        once and then stored, so a later `get` of the same topic embeds nothing. Lets a caller
        that also needs the vector (the mail search) share the one embedding call."""
        key = topic_key(topic, self.max_topic_chars)
        space = self.space()
        with store.connect(self.engine) as conn:
            vector = self._embedding(conn, space, _Lookup(topic=clean(topic), key=key, started=time.perf_counter()),
                                     look=True)
            conn.commit()
        return vector

    def explain_search(self, topic: str) -> str:
        """The query plan of the semantic search for ``topic`` (EXPLAIN, not run)."""
        key = topic_key(topic, self.max_topic_chars)
        space = self.space()
        vector = self.embedding(topic)
        with store.connect(self.engine) as conn:
            return store.explain_candidates(conn, space, vector, key, self.candidates, max_age=self.max_age)

    def neighbours(self, topic: str, *, k: int = 5, threshold: float | None = None) -> list[Neighbour]:
        """The ``k`` cached phrases nearest to ``topic``, and which one `get` would serve now."""
        key = topic_key(topic, self.max_topic_chars)
        threshold = self.threshold if threshold is None else check_threshold(threshold)
        bound = self.entry_error_bound if self.entry_thresholds else self.default_entry_error_bound
        space = self.space()
        vector = self.embedding(topic)
        with store.connect(self.engine) as conn:
            rows = self._candidates(conn, space, vector, key, k)
        exact = next((row for row in rows if row.key == key), None)
        best, _ = (None, {}) if exact is not None else self._choose(rows, key, threshold, bound)
        chosen = exact.entry_id if exact is not None else best[0].entry_id if best is not None else None
        out = []
        for row in rows:
            match = self.matcher.match(key, row.key, row.distance)
            out.append(Neighbour(entry_id=row.entry_id, key=row.key, distance=float(row.distance),
                                 blob_key=row.blob_key, banned=row.banned, would_serve=row.entry_id == chosen,
                                 relation=match.relation, score=match.score,
                                 threshold=self.own_threshold(EntryEvidence.of(row), threshold, bound)))
        return out

    def _is_fresh(self, created_at: datetime) -> bool:
        if self.max_age is None:
            return True
        return created_at >= datetime.now(created_at.tzinfo) - self.max_age

    # ------------------------------------------------------------------ events

    def _record(self, conn: Connection, result: CacheResult) -> None:
        t = result.timings
        score = result.score if result.score is None or math.isfinite(result.score) else None
        store.record_event(conn, {
            "query": result.topic[:1000], "key": result.key, "kind": result.kind, "relation": result.relation,
            "score": score, "entry_id": result.entry_id, "served_key": result.served_key,
            "distance": result.distance, "threshold": result.threshold,
            "space_id": self._space.id if self._space else None, "embedded": result.embedded,
            "embed_ms": t.embed_ms, "search_ms": t.search_ms, "generate_ms": t.generate_ms, "blob_ms": t.blob_ms,
            "total_ms": t.total_ms, "spent": result.cost_spent_usd, "saved": result.cost_saved_usd})

    def _record_error(self, state: "_Lookup", threshold: float | None, exc: Exception) -> None:
        try:
            with store.begin(self.engine) as conn:
                store.record_error(conn, {
                    "query": state.topic[:1000], "key": state.key,
                    "threshold": state.threshold if state.threshold is not None else threshold,
                    "space_id": self._space.id if self._space else None, "embedded": state.embedded,
                    "embed_ms": state.embed_ms, "search_ms": state.search_ms, "generate_ms": state.generate_ms,
                    "blob_ms": state.blob_ms, "total_ms": _ms(state.started),
                    "error": f"{type(exc).__name__}: {exc}"[:2000]})
        except Exception:  # the database itself may be what failed; the original error matters more
            pass


def embed(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """The embedder's vectors for ``texts`` as float32 rows; EmbeddingError when it fails or
    answers with the wrong shape."""
    try:
        vectors = np.asarray(embedder.embed(list(texts)), dtype=np.float32)
    except EmbeddingError:
        raise
    except Exception as exc:
        raise EmbeddingError(f"The embedding model failed: {exc}") from exc
    if vectors.shape != (len(texts), embedder.dimensions):
        raise EmbeddingError(f"The embedding model returned vectors of shape {vectors.shape}, "
                             f"expected ({len(texts)}, {embedder.dimensions}).")
    return vectors


@dataclass
class _Lookup:
    """Running state of one `get`."""

    topic: str
    key: str
    started: float
    canon: str = ""
    user: str | None = None
    threshold: float | None = None
    error_bound: float | None = None
    """The stored error bound of the entries' own thresholds, read with the threshold."""
    embedded: bool = False
    embed_ms: float | None = None
    search_ms: float = 0.0
    generate_ms: float | None = None
    blob_ms: float | None = None
    stale_id: int | None = None
    stale_blob: str | None = None
    owner: str | None = None
    """This lookup's token in the key's claim (`semcache_pending.owner`)."""
    reserved: date | None = None
    """The day the cost guard counted this lookup's new picture on, once the claim committed."""
    vector: np.ndarray | None = None
    """What a retry after a dropped connection must not pay for again: the topic's new vector,
    the generated picture and the key it was stored under."""
    image: GeneratedImage | None = None
    blob_key: str | None = None

    def timings(self) -> Timings:
        return Timings(embed_ms=self.embed_ms, search_ms=self.search_ms, generate_ms=self.generate_ms,
                       blob_ms=self.blob_ms, total_ms=_ms(self.started))


class _Leases:
    """The claims of this process's running generations, renewed together (one UPDATE) every
    third of the lease by one thread, which lives while there is something to renew."""

    def __init__(self, engine: Engine, lease_seconds: float) -> None:
        self.engine = engine
        self.lease_seconds = lease_seconds
        self._owners: set[str] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def hold(self, owner: str) -> None:
        with self._changed:
            self._owners.add(owner)
            if self._thread is None:
                self._thread = threading.Thread(target=self._renew, name="semcache-leases", daemon=True)
                self._thread.start()

    def drop(self, owner: str) -> None:
        with self._changed:
            self._owners.discard(owner)
            self._changed.notify_all()

    def _renew(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: not self._owners, timeout=self.lease_seconds / 3)
                if not self._owners:
                    self._thread = None
                    return
                owners = list(self._owners)
            try:
                with store.begin(self.engine) as conn:
                    store.renew(conn, owners, self.lease_seconds)
            except Exception as exc:  # the database may be restarting: the next round tries again
                log.warning("Could not renew the leases of %d generations: %s", len(owners), exc)

