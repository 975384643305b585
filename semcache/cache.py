"""The semantic cache: an image per topic phrase, served again for phrases close in meaning."""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from typing import Callable, Iterator, Literal, Sequence

import numpy as np
from sqlalchemy import Connection, Engine, TextClause, text
from sqlalchemy.exc import DBAPIError

from semcache.errors import BlobNotFound, BlobStoreError, EmbeddingError, GenerationError, SemcacheError
from semcache.budget import CostGuard
from semcache.interfaces import BlobStore, Embedder, GeneratedImage, Generator
from semcache.matching import EXACT, Match, Matcher
from semcache.report import Totals, totals
from semcache.schema import RUNTIME_INDEX_PREFIX
from semcache.normalize import check_threshold, clean, topic_key

Kind = Literal["exact", "semantic", "generated"]

log = logging.getLogger(__name__)

THRESHOLD_SETTING = "threshold"
_LOCK_CLASS = 727_274_002
"""First half of the advisory-lock id taken while an embedding space is registered."""
_FIRST_POLL_SECONDS = 0.02
_MAX_POLL_SECONDS = 0.5
"""How often a lookup waiting for another one's generation of its key looks again: doubling
from the first delay up to the second."""
_CLAIMED, _HELD, _AGAIN = object(), object(), object()
HNSW_VECTOR_MAX_DIMENSIONS = 2000
HNSW_HALFVEC_MAX_DIMENSIONS = 4000


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
    """`report.Totals` and the cache's configuration, for `python -m semcache stats`."""

    embedding_model: str = ""
    dimensions: int = 0
    threshold: float = 0.0


@dataclass(frozen=True)
class _Space:
    id: int
    dimensions: int

    @property
    def cast(self) -> str:
        kind = "halfvec" if self.dimensions > HNSW_VECTOR_MAX_DIMENSIONS else "vector"
        return f"{kind}({self.dimensions})"

    @property
    def opclass(self) -> str:
        return "halfvec_cosine_ops" if self.dimensions > HNSW_VECTOR_MAX_DIMENSIONS else "vector_cosine_ops"

    @property
    def index_name(self) -> str:
        return f"{RUNTIME_INDEX_PREFIX}{self.id}"

    @property
    def predicate(self) -> str:
        # Literal values, so the planner can match the partial index.
        return f"space_id = {self.id} AND entry_id IS NOT NULL"


_EMBEDDING_SQL = text("SELECT embedding::real[] FROM semcache_embeddings WHERE space_id = :s AND key = :k")
# A lost row costs one more embedding call some day: no need to wait for the disk.
_STORE_EMBEDDING_SQL = text("""
    SET LOCAL synchronous_commit = off;
    INSERT INTO semcache_embeddings (space_id, key, embedding)
    VALUES (:s, :k, CAST(:v AS vector)) ON CONFLICT (space_id, key) DO NOTHING""")
_EVENT_COLUMNS = """
    INSERT INTO semcache_events (query, key, kind, relation, score, entry_id, served_key, distance, threshold,
                                 space_id, embedded, embed_ms, search_ms, generate_ms, blob_ms, total_ms,
                                 cost_spent_usd, cost_saved_usd)
    VALUES (:query, :key, :kind, :relation, :score, :entry_id, :served_key, :distance, :threshold, :space_id,
            :embedded,
            :embed_ms, :search_ms, :generate_ms, :blob_ms, :total_ms, :spent, :saved)"""
# Losing the last few hit events in a crash is acceptable; waiting for a disk flush on every cache
# hit is not. A new entry's transaction waits, as it should.
_HIT_EVENT_SQL = text("SET LOCAL synchronous_commit = off;" + _EVENT_COLUMNS)
_GENERATED_EVENT_SQL = text(_EVENT_COLUMNS)
# A claim is taken when the key has none, when its lease ran out (its process died), or when it
# is already this lookup's own (a retry after a dropped connection).
_CLAIM_SQL = text("""
    INSERT INTO semcache_pending AS p (canon, key, owner, lease_until)
    VALUES (:canon, :key, :owner, now() + make_interval(secs => :lease))
    ON CONFLICT (canon) DO UPDATE
    SET key = excluded.key, owner = excluded.owner, claimed_at = now(), lease_until = excluded.lease_until
    WHERE p.lease_until < now() OR p.owner = excluded.owner
    RETURNING 1""")
_HELD_SQL = text("SELECT lease_until >= now() FROM semcache_pending WHERE canon = :canon")
_UNCLAIM_SQL = text("DELETE FROM semcache_pending WHERE canon = :canon AND owner = :owner")
_RENEW_SQL = text("UPDATE semcache_pending SET lease_until = now() + make_interval(secs => :lease) "
                  "WHERE owner = ANY(:owners)")
_SECOND_LOOK_SQL = text("SELECT id, key, blob_key, detail, created_at FROM semcache_entries "
                        "WHERE key = :key OR canon = :canon ORDER BY key = :key DESC, id LIMIT 1")


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form; nine significant digits round-trip a float32 exactly."""
    return "[" + ",".join(["%.9g" % x for x in vector.astype(np.float32).tolist()]) + "]"


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class SemanticCache:
    """Images for topic phrases, cached by meaning in PostgreSQL + pgvector.

    The collaborators are passed in: ``engine`` (SQLAlchemy, on a database migrated with the
    app's migrations or `semcache.schema.metadata`), an ``embedder``, a ``generator`` and a
    ``blobs`` store. ``default_threshold`` is used until a threshold is stored in the database;
    the stored one is read on every lookup, so a change made in one process applies in all.
    A key being generated is claimed for ``generation_lease``, renewed every third of it while
    the generator runs; a claim whose process died is taken over once its lease runs out.
    """

    def __init__(
        self,
        engine: Engine,
        embedder: Embedder,
        generator: Generator,
        blobs: BlobStore,
        *,
        default_threshold: float = 0.35,
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
        self._lease_seconds = generation_lease.total_seconds()
        if not self._lease_seconds > 0:
            raise ValueError(f"generation_lease must be positive, not {generation_lease!r}.")
        self._leases = _Leases(engine, self._lease_seconds)
        self._space: _Space | None = None
        self._space_lock = threading.Lock()
        self._search_statements: dict[int, TextClause] = {}
        self._lookup_sql = text(f"""
            SELECT (SELECT value FROM semcache_settings WHERE name = :setting) AS stored_threshold,
                   e.id, e.key, e.blob_key, e.detail,
                   CASE WHEN e.id IS NULL THEN
                       (SELECT embedding::real[] FROM semcache_embeddings WHERE space_id = :space AND key = :key)
                   END AS vector
            FROM (SELECT 1) AS one
            LEFT JOIN LATERAL (
                SELECT id, key, blob_key, detail FROM semcache_entries e
                WHERE (e.key = :key OR e.canon = :canon) {self._fresh_sql('e')}
                ORDER BY e.key = :key DESC, e.id LIMIT 1
            ) e ON true
        """)

    # ------------------------------------------------------------------ the threshold

    @property
    def threshold(self) -> float:
        with self.engine.connect() as conn:
            value = conn.execute(text("SELECT value FROM semcache_settings WHERE name = :n"),
                                 {"n": THRESHOLD_SETTING}).scalar()
        return self.default_threshold if value is None else float(value)

    def set_threshold(self, value: float, *, actor: str | None = None) -> float:
        """Store the threshold for every process; it applies from their next lookup."""
        value = check_threshold(value)
        with self.engine.begin() as conn:
            conn.execute(text("""
                INSERT INTO semcache_settings (name, value, updated_at, updated_by)
                VALUES (:n, to_jsonb(CAST(:v AS double precision)), now(), :actor)
                ON CONFLICT (name) DO UPDATE
                SET value = excluded.value, updated_at = excluded.updated_at, updated_by = excluded.updated_by
            """), {"n": THRESHOLD_SETTING, "v": value, "actor": actor})
        return value

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
        GenerationError or BlobStoreError when a service fails (nothing half-made is stored).
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
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                # The database restarted under this lookup: once more on a new connection, with
                # what was already paid for (the vector, the picture, its blob) kept in ``state``.
                result = self._get(state, threshold, fetch_image)
        except SemcacheError as exc:
            self._record_error(state, threshold, exc)
            raise
        if result.kind == "generated" and self.max_entries is not None:
            self.evict()
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
        with self.engine.connect() as conn:
            # One round trip: the stored threshold, the exact entry, and (only when there is no
            # exact entry) the phrase's cached embedding.
            row = conn.execute(self._lookup_sql, {"setting": THRESHOLD_SETTING, "key": state.key,
                                                  "canon": state.canon, "space": space.id}).one()
            state.search_ms += _ms(t)
            if threshold is None:
                threshold = self.default_threshold if row.stored_threshold is None else float(row.stored_threshold)
            state.threshold = threshold
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

    def _semantic_hit(self, conn: Connection, state: "_Lookup", space: _Space, vector: np.ndarray,
                      threshold: float, fetch_image: bool, *, claimed: bool = False) -> CacheResult | None:
        """The nearest allowed entry within ``threshold``, served; None when there is none."""
        if threshold <= 0:
            return None
        t = time.perf_counter()
        best = self._nearest(conn, space, vector, state.key, threshold)
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
                conn.execute(text("DELETE FROM semcache_entries WHERE id = :id"), {"id": entry_id})
                conn.commit()
                return None
            state.blob_ms = (state.blob_ms or 0.0) + _ms(t)
        if claimed:
            conn.execute(_UNCLAIM_SQL, {"canon": state.canon, "owner": state.owner})
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

    def _generate(self, state: "_Lookup", space: _Space, vector: np.ndarray, threshold: float,
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

    def _claim(self, state: "_Lookup", space: _Space, vector: np.ndarray, threshold: float, fetch_image: bool,
               price: float) -> CacheResult | object:
        """Claim the key, look a second time, reserve the budget, all in one short transaction:
        a hit (the claim undone), `_CLAIMED` (committed), `_HELD` (by another lookup) or `_AGAIN`."""
        with self.engine.connect() as conn:
            t = time.perf_counter()
            # Keyed by the dictionary form: "dog" and "dogs" wait for each other.
            claimed = conn.execute(_CLAIM_SQL, {"canon": state.canon, "key": state.key, "owner": state.owner,
                                                "lease": self._lease_seconds}).first() is not None
            if not claimed:
                state.search_ms += _ms(t)
                conn.rollback()
                return _HELD
            # Looked at after the claim: a claimer that finished committed its entry with its claim's removal.
            row = conn.execute(_SECOND_LOOK_SQL, {"key": state.key, "canon": state.canon}).one_or_none()
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
            with self.engine.connect() as conn:
                held = conn.execute(_HELD_SQL, {"canon": state.canon}).scalar()
            if not held:
                return delay

    def _make(self, state: "_Lookup", space: _Space, vector: np.ndarray, threshold: float, fetch_image: bool,
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
        except DBAPIError as exc:
            self._leases.drop(state.owner)
            if not exc.connection_invalidated:
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
            self._collect_blobs([state.blob_key])
            state.image = state.blob_key = None
        elif state.stale_blob and state.stale_blob != state.blob_key:
            self._collect_blobs([state.stale_blob])
        return result

    def _store(self, state: "_Lookup", space: _Space, vector: np.ndarray, threshold: float, fetch_image: bool,
               price: float) -> CacheResult | None:
        """The entry, its vector and its event, and the claim removed, in one transaction: the row
        exists only with its blob. None when another lookup stored the key first (after this
        one's lease had run out)."""
        image, blob_key = state.image, state.blob_key
        assert image is not None and blob_key is not None
        with self.engine.connect() as conn:
            if state.stale_id is not None:
                conn.execute(text("DELETE FROM semcache_entries WHERE id = :id"), {"id": state.stale_id})
            entry_id = conn.execute(text("""
                INSERT INTO semcache_entries (key, canon, phrase, blob_key, content_type, size_bytes, generator,
                                              detail, cost_usd)
                VALUES (:key, :canon, :phrase, :blob_key, 'image/png', :size, :generator, :detail, :cost)
                ON CONFLICT (key) DO NOTHING
                RETURNING id
            """), {"key": state.key, "canon": state.canon, "phrase": state.topic, "blob_key": blob_key,
                   "size": len(image.png), "generator": self.generator.name, "detail": image.detail,
                   "cost": price}).scalar()
            if entry_id is None:
                conn.rollback()
                conn.execute(_UNCLAIM_SQL, {"canon": state.canon, "owner": state.owner})
                conn.commit()
                state.stale_id = None
                return None
            conn.execute(text("""
                INSERT INTO semcache_embeddings (space_id, key, embedding, entry_id)
                VALUES (:space, :key, CAST(:vec AS vector), :entry)
                ON CONFLICT (space_id, key) DO UPDATE SET entry_id = excluded.entry_id
            """), {"space": space.id, "key": state.key, "vec": vector_literal(vector), "entry": entry_id})
            result = CacheResult(
                kind="generated", topic=state.topic, key=state.key, served_key=state.key, distance=None,
                threshold=threshold, entry_id=entry_id, blob_key=blob_key,
                image=image.png if fetch_image else None, detail=image.detail, cost_spent_usd=price,
                cost_saved_usd=0.0, embedded=state.embedded, timings=state.timings(),
            )
            self._record(conn, result)
            conn.execute(_UNCLAIM_SQL, {"canon": state.canon, "owner": state.owner})
            conn.commit()
        return result

    def _abandon(self, state: "_Lookup", price: float, *, refund: bool) -> None:
        """Remove a failed lookup's claim (and give its reservation back when ``refund``). If the
        database cannot be reached, the claim's lease runs out on its own."""
        try:
            with self.engine.begin() as conn:
                conn.execute(_UNCLAIM_SQL, {"canon": state.canon, "owner": state.owner})
                if refund and state.reserved is not None and self.guard is not None:
                    self.guard.release(state.user, price, state.reserved, conn=conn)
        except DBAPIError:
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

    def space(self) -> _Space:
        """The embedding space of this cache's embedder, registered (with its index) on first use."""
        if self._space is not None:
            return self._space
        with self._space_lock:
            if self._space is None:
                self._space = self._register_space(self.embedder)
        return self._space

    def _register_space(self, embedder: Embedder) -> _Space:
        dims = int(embedder.dimensions)
        if dims > HNSW_HALFVEC_MAX_DIMENSIONS:
            raise SemcacheError(f"Embeddings of {dims} dimensions cannot be indexed; "
                                f"ask the model for {HNSW_HALFVEC_MAX_DIMENSIONS} or fewer.")
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:cls, 0)"), {"cls": _LOCK_CLASS})
            conn.execute(text("INSERT INTO semcache_spaces (model, dimensions) VALUES (:m, :d) "
                              "ON CONFLICT (model, dimensions) DO NOTHING"), {"m": embedder.model, "d": dims})
            space_id = conn.execute(text("SELECT id FROM semcache_spaces WHERE model = :m AND dimensions = :d"),
                                    {"m": embedder.model, "d": dims}).scalar_one()
            space = _Space(id=space_id, dimensions=dims)
            conn.execute(text(
                f"CREATE INDEX IF NOT EXISTS {space.index_name} ON semcache_embeddings "
                f"USING hnsw ((embedding::{space.cast}) {space.opclass}) "
                f"WITH (m = {self.hnsw_m}, ef_construction = {self.hnsw_ef_construction}) WHERE {space.predicate}"))
        return space

    def _embedding(self, conn: Connection, space: _Space, state: "_Lookup",
                   stored: Sequence[float] | None = None, *, look: bool = False) -> np.ndarray:
        """The phrase's vector: ``stored`` (read with the exact lookup), from the embedding cache
        when ``look``, or else from the model, once, and then stored in the caller's transaction."""
        if look:
            t = time.perf_counter()
            stored = conn.execute(_EMBEDDING_SQL, {"s": space.id, "k": state.key}).scalar()
            state.search_ms += _ms(t)
        if stored is not None:
            return np.asarray(stored, dtype=np.float32)
        if state.vector is None:
            t = time.perf_counter()
            state.vector = self._embed([state.key])[0]
            state.embed_ms = _ms(t)
            state.embedded = True
        vector = state.vector
        conn.execute(_STORE_EMBEDDING_SQL, {"s": space.id, "k": state.key, "v": vector_literal(vector)})
        return vector

    def _embed(self, texts: Sequence[str], embedder: Embedder | None = None) -> np.ndarray:
        embedder = embedder or self.embedder
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

    def _search_sql(self, space: _Space) -> str:
        """Top-k by cosine distance through the space's HNSW index, then the threshold, the
        wrong-match bans and the age limit on those k: the MATERIALIZED CTE keeps the filters
        from being pushed into the index scan."""
        return f"""
            WITH nearest AS MATERIALIZED (
                SELECT entry_id, embedding::{space.cast} <=> CAST(:vec AS {space.cast}) AS distance
                FROM semcache_embeddings
                WHERE {space.predicate}
                ORDER BY embedding::{space.cast} <=> CAST(:vec AS {space.cast})
                LIMIT :k
            )
            SELECT n.entry_id, e.key, e.blob_key, e.detail, n.distance,
                   EXISTS (SELECT 1 FROM semcache_feedback f
                           WHERE f.query_key = :key AND f.entry_key = e.key AND f.verdict = 'wrong') AS banned
            FROM nearest n JOIN semcache_entries e ON e.id = n.entry_id {self._fresh_sql('e', 'WHERE')}
            ORDER BY n.distance, e.id
        """

    def _candidates(self, conn: Connection, space: _Space, vector: np.ndarray, key: str,
                    k: int) -> list:
        statement = self._search_statements.get(space.id)
        if statement is None:
            # The search breadth goes in the same round trip as the search. The iterative scan
            # keeps walking the graph past index entries whose rows are gone (deleted or evicted
            # entries, until VACUUM): without it, enough of them nearer a query than the live
            # entries would hide those entries. The outer query sorts by distance again.
            breadth = f"SET LOCAL hnsw.ef_search = {int(self.ef_search)};" if self.ef_search else ""
            statement = self._search_statements[space.id] = text(
                breadth + "SET LOCAL hnsw.iterative_scan = relaxed_order;" + self._search_sql(space))
        return conn.execute(statement, {"vec": vector_literal(vector), "k": k, "key": key}).all()

    def _nearest(self, conn: Connection, space: _Space, vector: np.ndarray, key: str,
                 threshold: float) -> tuple[object, Match] | None:
        """The candidate the matcher scores best within ``threshold``, with its match."""
        return self._choose(self._candidates(conn, space, vector, key, self.candidates), key, threshold)[0]

    def _choose(self, rows: Sequence, key: str, threshold: float) -> tuple[tuple[object, Match] | None, dict]:
        """The best of ``rows`` (nearest first) for ``key`` at ``threshold``, and the matches it
        scored (by entry id). A row further than the threshold times the matcher's stretch cannot
        win, nor can one whose best possible score is already beaten: neither is looked up."""
        best: tuple[object, Match] | None = None
        scored: dict[int, Match] = {}
        if threshold <= 0:
            return None, scored
        stretch = self.matcher.stretch
        for row in rows:
            if row.distance > threshold * stretch or (best is not None and row.distance / stretch >= best[1].score):
                break
            if row.banned or row.key == key:
                continue
            match = scored[row.entry_id] = self.matcher.match(key, row.key, row.distance)
            if match.serves(threshold) and (best is None or match.score < best[1].score):
                best = (row, match)
        return best, scored

    def embedding(self, topic: str) -> np.ndarray:
        """The topic's vector in this cache's space: from the embedding cache, or from the model
        once and then stored, so a later `get` of the same topic embeds nothing. Lets a caller
        that also needs the vector (the mail search) share the one embedding call."""
        key = topic_key(topic, self.max_topic_chars)
        space = self.space()
        with self.engine.connect() as conn:
            vector = self._embedding(conn, space, _Lookup(topic=clean(topic), key=key, started=time.perf_counter()),
                                     look=True)
            conn.commit()
        return vector

    def explain_search(self, topic: str) -> str:
        """The query plan of the semantic search for ``topic`` (EXPLAIN, not run)."""
        key = topic_key(topic, self.max_topic_chars)
        space = self.space()
        vector = self.embedding(topic)
        with self.engine.connect() as conn:
            rows = conn.execute(text("EXPLAIN " + self._search_sql(space)),
                                {"vec": vector_literal(vector), "k": self.candidates, "key": key}).scalars()
            return "\n".join(rows)

    def neighbours(self, topic: str, *, k: int = 5, threshold: float | None = None) -> list[Neighbour]:
        """The ``k`` cached phrases nearest to ``topic``, and which one `get` would serve now."""
        key = topic_key(topic, self.max_topic_chars)
        threshold = self.threshold if threshold is None else check_threshold(threshold)
        space = self.space()
        vector = self.embedding(topic)
        with self.engine.connect() as conn:
            rows = self._candidates(conn, space, vector, key, k)
        exact = next((row for row in rows if row.key == key), None)
        best, _ = (None, {}) if exact is not None else self._choose(rows, key, threshold)
        chosen = exact.entry_id if exact is not None else best[0].entry_id if best is not None else None
        out = []
        for row in rows:
            match = self.matcher.match(key, row.key, row.distance)
            out.append(Neighbour(entry_id=row.entry_id, key=row.key, distance=float(row.distance),
                                 blob_key=row.blob_key, banned=row.banned, would_serve=row.entry_id == chosen,
                                 relation=match.relation, score=match.score))
        return out

    # ------------------------------------------------------------------ feedback

    def mark_wrong(self, query: str, served_key: str, *, distance: float | None = None, actor: str = "",
                   note: str = "") -> None:
        """Record that ``query`` must not be served by the entry ``served_key``; it never will be."""
        self._feedback(query, served_key, "wrong", distance, actor, note)

    def mark_right(self, query: str, served_key: str, *, distance: float | None = None, actor: str = "",
                   note: str = "") -> None:
        """Record that serving ``served_key`` for ``query`` was right (evidence for tuning)."""
        self._feedback(query, served_key, "right", distance, actor, note)

    def _feedback(self, query: str, served_key: str, verdict: str, distance: float | None, actor: str,
                  note: str) -> None:
        query_key = topic_key(query, self.max_topic_chars)
        entry_key = topic_key(served_key, self.max_topic_chars)
        with self.engine.begin() as conn:
            conn.execute(text("""
                INSERT INTO semcache_feedback (query_key, entry_key, verdict, distance, note, actor)
                VALUES (:q, :e, :v, :d, :note, :actor)
                ON CONFLICT (query_key, entry_key) DO UPDATE
                SET verdict = excluded.verdict, distance = excluded.distance, note = excluded.note,
                    actor = excluded.actor, created_at = now()
            """), {"q": query_key, "e": entry_key, "v": verdict, "d": distance, "note": note, "actor": actor})

    def feedback(self) -> list:
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT query_key, entry_key, verdict, distance, note, actor, created_at "
                                     "FROM semcache_feedback ORDER BY created_at DESC")).all()

    # ------------------------------------------------------------------ entries

    _ENTRY_SQL = """
        SELECT e.id, e.key, e.phrase, e.blob_key, e.size_bytes, e.generator, e.detail, e.cost_usd,
               e.created_at, COALESCE(s.times_served, 0) AS times_served, s.last_served_at
        FROM semcache_entries e
        LEFT JOIN LATERAL (
            SELECT count(*) AS times_served, max(at) AS last_served_at
            FROM semcache_events v WHERE v.entry_id = e.id AND v.kind IN ('exact', 'semantic')
        ) s ON true
    """

    def entries(self, *, limit: int = 100, offset: int = 0) -> list[Entry]:
        """Cached entries, newest first, with how often each was served."""
        with self.engine.connect() as conn:
            rows = conn.execute(text(self._ENTRY_SQL + " ORDER BY e.created_at DESC, e.id DESC "
                                     "LIMIT :limit OFFSET :offset"), {"limit": limit, "offset": offset})
            return [Entry(**{**row._mapping, "cost_usd": float(row.cost_usd)}) for row in rows]

    def entry(self, phrase: str) -> Entry | None:
        key = topic_key(phrase, self.max_topic_chars)
        with self.engine.connect() as conn:
            row = conn.execute(text(self._ENTRY_SQL + " WHERE e.key = :key"), {"key": key}).one_or_none()
        return None if row is None else Entry(**{**row._mapping, "cost_usd": float(row.cost_usd)})

    def image(self, blob_key: str) -> bytes:
        return self.blobs.get(blob_key)

    def delete(self, phrase: str) -> bool:
        """Delete the entry for ``phrase`` (and its image, unless another entry shares it)."""
        key = topic_key(phrase, self.max_topic_chars)
        with self.engine.begin() as conn:
            blob = conn.execute(text("DELETE FROM semcache_entries WHERE key = :key RETURNING blob_key"),
                                {"key": key}).scalar()
        if blob is None:
            return False
        self._collect_blobs([blob])
        return True

    def evict(self) -> int:
        """Apply ``max_entries`` (least recently served go first) and ``max_age``; returns how many
        entries were removed."""
        clauses = []
        if self.max_age is not None:
            clauses.append("SELECT id FROM semcache_entries WHERE created_at < now() - :age")
        if self.max_entries is not None:
            clauses.append("""
                SELECT e.id FROM semcache_entries e
                LEFT JOIN LATERAL (SELECT max(at) AS last FROM semcache_events v
                                   WHERE v.entry_id = e.id) s ON true
                ORDER BY GREATEST(s.last, e.created_at) DESC, e.id DESC
                OFFSET :keep""")
        if not clauses:
            return 0
        with self.engine.begin() as conn:
            blobs = conn.execute(text(f"DELETE FROM semcache_entries WHERE id IN ({' UNION '.join(clauses)}) "
                                      "RETURNING blob_key"),
                                 {"age": self.max_age, "keep": self.max_entries}).scalars().all()
        self._collect_blobs(blobs)
        return len(blobs)

    def _collect_blobs(self, blob_keys: Sequence[str]) -> None:
        """Delete blobs no entry refers to any more. A failure leaves an orphan blob, never a
        dangling entry."""
        if not blob_keys:
            return
        with self.engine.connect() as conn:
            used = set(conn.execute(text("SELECT DISTINCT blob_key FROM semcache_entries "
                                         "WHERE blob_key = ANY(:keys)"), {"keys": list(blob_keys)}).scalars())
        for blob_key in set(blob_keys) - used:
            try:
                self.blobs.delete(blob_key)
            except BlobStoreError:
                pass

    def _fresh_sql(self, alias: str, keyword: str = "AND") -> str:
        if self.max_age is None:
            return ""
        seconds = self.max_age.total_seconds()
        return f"{keyword} {alias}.created_at >= now() - make_interval(secs => {seconds!r})"

    def _is_fresh(self, created_at: datetime) -> bool:
        if self.max_age is None:
            return True
        return created_at >= datetime.now(created_at.tzinfo) - self.max_age

    # ------------------------------------------------------------------ model switch

    def reembed(self, embedder: Embedder, *, batch_size: int = 128,
                progress: Callable[[int, int], None] | None = None) -> int:
        """Embed every cached phrase with ``embedder`` into its own space (kept apart from every
        other model's vectors) and return how many phrases were embedded. Phrases that space
        already holds are not sent to the model again. Point the app at the new model afterwards.
        """
        space = self._register_space(embedder)
        with self.engine.connect() as conn:
            todo = conn.execute(text("""
                SELECT e.id, e.key FROM semcache_entries e
                LEFT JOIN semcache_embeddings v ON v.space_id = :s AND v.key = e.key
                WHERE v.key IS NULL OR v.entry_id IS DISTINCT FROM e.id
                ORDER BY e.id"""), {"s": space.id}).all()
        done = 0
        for batch in _batches(todo, batch_size):
            with self.engine.begin() as conn:
                known = dict(conn.execute(text(
                    "SELECT key, embedding::real[] FROM semcache_embeddings WHERE space_id = :s AND key = ANY(:k)"),
                    {"s": space.id, "k": [row.key for row in batch]}).all())
                missing = [row.key for row in batch if row.key not in known]
                if missing:
                    for key, vector in zip(missing, self._embed(missing, embedder)):
                        known[key] = vector
                for row in batch:
                    conn.execute(text("""
                        INSERT INTO semcache_embeddings (space_id, key, embedding, entry_id)
                        VALUES (:s, :k, CAST(:v AS vector), :e)
                        ON CONFLICT (space_id, key) DO UPDATE SET entry_id = excluded.entry_id
                    """), {"s": space.id, "k": row.key, "e": row.id,
                           "v": vector_literal(np.asarray(known[row.key], dtype=np.float32))})
            done += len(batch)
            if progress:
                progress(done, len(todo))
        return done

    # ------------------------------------------------------------------ events and stats

    def _record(self, conn: Connection, result: CacheResult) -> None:
        t = result.timings
        score = result.score if result.score is None or math.isfinite(result.score) else None
        conn.execute(_GENERATED_EVENT_SQL if result.kind == "generated" else _HIT_EVENT_SQL,
                     {"query": result.topic[:1000], "key": result.key, "kind": result.kind,
                      "relation": result.relation, "score": score,
                      "entry_id": result.entry_id, "served_key": result.served_key, "distance": result.distance,
                      "threshold": result.threshold, "space_id": self._space.id if self._space else None,
                      "embedded": result.embedded, "embed_ms": t.embed_ms, "search_ms": t.search_ms,
                      "generate_ms": t.generate_ms, "blob_ms": t.blob_ms, "total_ms": t.total_ms,
                      "spent": result.cost_spent_usd, "saved": result.cost_saved_usd})

    def _record_error(self, state: "_Lookup", threshold: float | None, exc: Exception) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(text("""
                    INSERT INTO semcache_events (query, key, kind, threshold, space_id, embedded, embed_ms,
                                                 search_ms, generate_ms, blob_ms, total_ms, error)
                    VALUES (:query, :key, 'error', :threshold, :space_id, :embedded, :embed_ms, :search_ms,
                            :generate_ms, :blob_ms, :total_ms, :error)
                """), {"query": state.topic[:1000], "key": state.key, "threshold": state.threshold if state.threshold is not None else threshold,
                       "space_id": self._space.id if self._space else None, "embedded": state.embedded,
                       "embed_ms": state.embed_ms, "search_ms": state.search_ms,
                       "generate_ms": state.generate_ms, "blob_ms": state.blob_ms,
                       "total_ms": _ms(state.started), "error": f"{type(exc).__name__}: {exc}"[:2000]})
        except Exception:  # the database itself may be what failed; the original error matters more
            pass

    def recent_events(self, limit: int = 50) -> list:
        with self.engine.connect() as conn:
            return conn.execute(text("""
                SELECT id, at, query, key, kind, served_key, distance, threshold, embedded, embed_ms,
                       search_ms, generate_ms, blob_ms, total_ms, cost_spent_usd, cost_saved_usd, error
                FROM semcache_events ORDER BY id DESC LIMIT :limit"""), {"limit": limit}).all()

    def stats(self) -> Stats:
        counts = totals(self.engine)
        return Stats(**{f.name: getattr(counts, f.name) for f in fields(Totals)},
                     embedding_model=self.embedder.model, dimensions=self.embedder.dimensions,
                     threshold=self.threshold)


@dataclass
class _Lookup:
    """Running state of one `get`."""

    topic: str
    key: str
    started: float
    canon: str = ""
    user: str | None = None
    threshold: float | None = None
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
                with self.engine.begin() as conn:
                    conn.execute(_RENEW_SQL, {"lease": self.lease_seconds, "owners": owners})
            except Exception as exc:  # the database may be restarting: the next round tries again
                log.warning("Could not renew the leases of %d generations: %s", len(owners), exc)


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
