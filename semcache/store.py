"""Every SQL statement on the cache's tables (`semcache.schema`), and the one way a database
error leaves the library: as `StorageError`.

Each function takes a Connection and runs its statement in the caller's transaction; `connect`
and `begin` open one, turning SQLAlchemy's errors (the server down, restarting, refusing) into
`StorageError` with the original as its ``__cause__``. Statements whose text depends on a space
or on the cache's age limit are built once per shape and kept (`functools.cache`).

What matters for speed is spelled out in the statements: ``SET LOCAL synchronous_commit = off``
where losing the last rows in a crash costs little (hit events, cached embeddings); each space's
predicate as literal values, so the planner matches the space's partial HNSW index; the search
breadth in the same round trip as the search.
"""

from __future__ import annotations

import functools
import io
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Callable, Iterator, Sequence

import numpy as np
from sqlalchemy import Connection, Engine, Row, TextClause, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from semcache import vectors
from semcache.errors import StorageError
from semcache.schema import ENTRY_EVIDENCE_SQL, LEGACY_THRESHOLD, LEGACY_THRESHOLD_COPY, RUNTIME_INDEX_PREFIX

CACHE_TABLES = ("semcache_events", "semcache_feedback", "semcache_embeddings", "semcache_entries",
                "semcache_spaces", "semcache_settings")
SPACE_LOCK_CLASS = 727_274_002
"""First half of the advisory-lock id taken while an embedding space is registered."""
_UNREACHABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)


# ---------------------------------------------------------------------- connections and errors


def storage_error(exc: SQLAlchemyError) -> StorageError:
    """``exc`` as the library's error: a sentence to act on, no SQL and no server address."""
    unavailable = isinstance(exc, _UNREACHABLE)
    if unavailable:
        message = ("The cache's database is not answering; check that PostgreSQL is running and reachable, "
                   "then try again.")
    else:
        message = (f"The cache's database refused a request ({type(exc).__name__}); check that its tables "
                   "are created and up to date (semcache.schema.upgrade) and that its user may use them.")
    error = StorageError(message)
    error.unavailable = unavailable
    error.connection_lost = isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
    return error


@contextmanager
def translated() -> Iterator[None]:
    """Raise SQLAlchemy's errors inside the block as `StorageError`."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise storage_error(exc) from exc


@contextmanager
def connect(engine: Engine) -> Iterator[Connection]:
    """A connection (commit it yourself); database errors as `StorageError`."""
    with translated(), engine.connect() as conn:
        yield conn


@contextmanager
def begin(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction committed at the end; database errors as `StorageError`."""
    with translated(), engine.begin() as conn:
        yield conn


# ---------------------------------------------------------------------- settings


_THRESHOLD_VALUE = "(SELECT threshold FROM semcache_spaces WHERE id = :space)"
"""The space's stored threshold in the lookup's one round trip; `stored_threshold` reads the same row alone."""
_THRESHOLD_SQL = text(f"""
    SELECT s.id, COALESCE(s.threshold, l.value) AS value,
           CASE WHEN s.threshold IS NOT NULL THEN s.threshold_set_at ELSE l.updated_at END AS updated_at,
           CASE WHEN s.threshold IS NOT NULL THEN s.threshold_set_by ELSE l.updated_by END AS updated_by
    FROM (SELECT 1) AS one
    LEFT JOIN semcache_spaces s ON s.model = :m AND s.dimensions = :d
    LEFT JOIN (SELECT CASE WHEN jsonb_typeof(value) = 'number' THEN (value #>> '{{}}')::double precision END AS value,
                      updated_at, updated_by
               FROM semcache_settings WHERE name = '{LEGACY_THRESHOLD}') l ON s.id IS NULL""")
"""The space's row, or (not registered yet) the one threshold of before that its registration adopts."""
_SET_THRESHOLD_SQL = text("""
    UPDATE semcache_spaces SET threshold = CAST(:v AS double precision), threshold_set_at = now(),
                               threshold_set_by = :actor
    WHERE id = :space""")
_SETTINGS_SQL = text("SELECT name, value FROM semcache_settings WHERE name = ANY(CAST(:names AS text[]))")
_SET_SETTING_SQL = text("""
    INSERT INTO semcache_settings (name, value, updated_at, updated_by)
    VALUES (:n, CAST(:v AS jsonb), now(), :actor)
    ON CONFLICT (name) DO UPDATE
    SET value = excluded.value, updated_at = excluded.updated_at, updated_by = excluded.updated_by
""")


def stored_threshold(conn: Connection, model: str, dimensions: int) -> Row:
    """The threshold stored for the space of ``model`` at ``dimensions`` (``id``, None while the
    space is not registered; ``value``, None while nobody set it; when and by whom it was set)."""
    return conn.execute(_THRESHOLD_SQL, {"m": model, "d": dimensions}).one()


def threshold_value(stored: object, default: float) -> float:
    """What a stored threshold (None: never set) means: the value in force."""
    return default if stored is None else float(stored)


def set_threshold(conn: Connection, space: "Space | int", value: float, actor: str | None) -> None:
    """Store ``value`` as the threshold of ``space`` (a registered space, or its id)."""
    conn.execute(_SET_THRESHOLD_SQL, {"space": getattr(space, "id", space), "v": value, "actor": actor})


def settings(conn: Connection, names: Sequence[str]) -> dict:
    """The stored values of these settings (JSON, decoded); names never set are left out."""
    return dict(conn.execute(_SETTINGS_SQL, {"names": list(names)}).all())


def set_setting(conn: Connection, name: str, json_value: str, actor: str | None) -> None:
    conn.execute(_SET_SETTING_SQL, {"n": name, "v": json_value, "actor": actor})


# ---------------------------------------------------------------------- embedding spaces


@dataclass(frozen=True)
class Space(vectors.IndexedSpace):
    """An embedding space (model + dimensions) and how its vectors are indexed and searched."""

    id: int
    dimensions: int

    @property
    def index_name(self) -> str:
        return f"{RUNTIME_INDEX_PREFIX}{self.id}"

    @property
    def predicate(self) -> str:
        # Literal values, so the planner can match the partial index.
        return f"space_id = {self.id} AND entry_id IS NOT NULL"


_SPACE_LOCK_SQL = text("SELECT pg_advisory_xact_lock(:cls, 0)")
_ADD_SPACE_SQL = text("INSERT INTO semcache_spaces (model, dimensions) VALUES (:m, :d) "
                      "ON CONFLICT (model, dimensions) DO NOTHING RETURNING id")
# A database upgraded before it had any space kept its one threshold of before for the first.
_ADOPT_LEGACY_THRESHOLD_SQL = text(f"""
    WITH adopted AS (UPDATE semcache_spaces SET {LEGACY_THRESHOLD_COPY} AND semcache_spaces.id = :id RETURNING 1)
    DELETE FROM semcache_settings WHERE name = '{LEGACY_THRESHOLD}'""")
_SPACE_SQL = text("SELECT id FROM semcache_spaces WHERE model = :m AND dimensions = :d")


def register_space(conn: Connection, model: str, dimensions: int, *, hnsw_m: int, hnsw_ef_construction: int) -> Space:
    """The space's row and its HNSW index, made if missing (one registration at a time)."""
    conn.execute(_SPACE_LOCK_SQL, {"cls": SPACE_LOCK_CLASS})
    added = conn.execute(_ADD_SPACE_SQL, {"m": model, "d": dimensions}).scalar()
    if added is not None:
        conn.execute(_ADOPT_LEGACY_THRESHOLD_SQL, {"id": added})
    space = Space(id=conn.execute(_SPACE_SQL, {"m": model, "d": dimensions}).scalar_one(), dimensions=dimensions)
    conn.execute(text(
        f"CREATE INDEX IF NOT EXISTS {space.index_name} ON semcache_embeddings "
        f"USING hnsw ((embedding::{space.cast}) {space.opclass}) "
        f"WITH (m = {int(hnsw_m)}, ef_construction = {int(hnsw_ef_construction)}) WHERE {space.predicate}"))
    return space


def space_id(conn: Connection, model: str, dimensions: int) -> int | None:
    return conn.execute(_SPACE_SQL, {"m": model, "d": dimensions}).scalar()


# ---------------------------------------------------------------------- the lookup


def _fresh(max_age: float | None, alias: str, keyword: str = "AND") -> str:
    if max_age is None:
        return ""
    return f"{keyword} {alias}.created_at >= now() - make_interval(secs => {max_age!r})"


def _seconds(max_age: timedelta | None) -> float | None:
    return None if max_age is None else max_age.total_seconds()


ENTRY_ERROR_BOUND_SETTING = "entry_error_bound"
"""The `semcache_settings` row of the error bound of the entries' own thresholds."""
_ERROR_BOUND_VALUE = f"(SELECT value FROM semcache_settings WHERE name = '{ENTRY_ERROR_BOUND_SETTING}')"


@functools.cache
def _lookup_sql(max_age: float | None) -> TextClause:
    return text(f"""
        SELECT {_THRESHOLD_VALUE} AS stored_threshold, {_ERROR_BOUND_VALUE} AS stored_error_bound,
               e.id, e.key, e.blob_key, e.detail,
               CASE WHEN e.id IS NULL THEN
                   (SELECT embedding::real[] FROM semcache_embeddings WHERE space_id = :space AND key = :key)
               END AS vector
        FROM (SELECT 1) AS one
        LEFT JOIN LATERAL (
            SELECT id, key, blob_key, detail FROM semcache_entries e
            WHERE (e.key = :key OR e.canon = :canon) {_fresh(max_age, 'e')}
            ORDER BY e.key = :key DESC, e.id LIMIT 1
        ) e ON true
    """)


def lookup(conn: Connection, key: str, canon: str, space: Space, max_age: timedelta | None) -> Row:
    """One round trip: the space's stored threshold, the stored error bound of the entries' own
    thresholds, the exact entry (by key or dictionary form, fresh), and, only when there is no
    such entry, the phrase's cached embedding."""
    return conn.execute(_lookup_sql(_seconds(max_age)),
                        {"key": key, "canon": canon, "space": space.id}).one()


_EMBEDDING_SQL = text("SELECT embedding::real[] FROM semcache_embeddings WHERE space_id = :s AND key = :k")
# A lost row costs one more embedding call some day: no need to wait for the disk.
_STORE_EMBEDDING_SQL = text("""
    SET LOCAL synchronous_commit = off;
    INSERT INTO semcache_embeddings (space_id, key, embedding)
    VALUES (:s, :k, CAST(:v AS vector)) ON CONFLICT (space_id, key) DO NOTHING""").bindparams(vectors.bind("v"))
_ATTACH_EMBEDDING_SQL = text("""
    INSERT INTO semcache_embeddings (space_id, key, embedding, entry_id)
    VALUES (:s, :k, CAST(:v AS vector), :e)
    ON CONFLICT (space_id, key) DO UPDATE SET entry_id = excluded.entry_id
""").bindparams(vectors.bind("v"))
_EMBEDDINGS_SQL = text(
    "SELECT key, embedding::real[] FROM semcache_embeddings WHERE space_id = :s AND key = ANY(:k)")


def embedding(conn: Connection, space: Space, key: str) -> list[float] | None:
    """The phrase's cached vector in ``space``."""
    return conn.execute(_EMBEDDING_SQL, {"s": space.id, "k": key}).scalar()


def embeddings(conn: Connection, space: Space, keys: Sequence[str]) -> dict[str, list[float]]:
    """The cached vectors of those phrases that ``space`` holds."""
    return dict(conn.execute(_EMBEDDINGS_SQL, {"s": space.id, "k": list(keys)}).all())


def store_embedding(conn: Connection, space: Space, key: str, vector: np.ndarray) -> None:
    """Keep a phrase's vector (the embedding cache); a phrase already there is left as it is."""
    conn.execute(_STORE_EMBEDDING_SQL, {"s": space.id, "k": key, "v": vector})


def attach_embedding(conn: Connection, space: Space, key: str, vector: np.ndarray, entry_id: int) -> None:
    """The entry's vector in ``space``, in its HNSW index from now on."""
    conn.execute(_ATTACH_EMBEDDING_SQL, {"s": space.id, "k": key, "v": vector, "e": entry_id})


_BANNED = """EXISTS (SELECT 1 FROM semcache_feedback f
                       WHERE f.query_key = :key AND f.verdict = 'wrong'
                         AND (f.entry_key = {entry}.key OR f.blob_hash = left({entry}.blob_key, 64)))"""
"""Whether the topic ``:key`` may not be served by the entry aliased ``entry``: a wrong-match
verdict on it, or on another entry with the same picture (blob keys are the sha256 of the bytes)."""
_IS_BANNED_SQL = text(f"SELECT {_BANNED.format(entry='e')} FROM (SELECT :served AS key, :blob AS blob_key) AS e")


def is_banned(conn: Connection, key: str, served_key: str, blob_key: str) -> bool:
    """Whether ``key`` may no longer be served by the entry ``served_key`` showing ``blob_key``."""
    return bool(conn.execute(_IS_BANNED_SQL, {"key": key, "served": served_key, "blob": blob_key}).scalar())


def _search_sql(space: Space, max_age: float | None) -> str:
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
               e.serves_right, e.serves_wrong, e.right_score, e.wrong_score, {_BANNED.format(entry='e')} AS banned
        FROM nearest n JOIN semcache_entries e ON e.id = n.entry_id {_fresh(max_age, 'e', 'WHERE')}
        ORDER BY n.distance, e.id
    """


@functools.cache
def _candidates_sql(space: Space, ef_search: int | None, max_age: float | None) -> TextClause:
    # The search breadth goes in the same round trip as the search. The iterative scan keeps
    # walking the graph past index entries whose rows are gone (deleted or evicted entries, until
    # VACUUM): without it, enough of them nearer a query than the live entries would hide those
    # entries. The outer query sorts by distance again.
    breadth = f"SET LOCAL hnsw.ef_search = {int(ef_search)};" if ef_search else ""
    return text(breadth + "SET LOCAL hnsw.iterative_scan = relaxed_order;"
                + _search_sql(space, max_age)).bindparams(vectors.bind("vec"))


def candidates(conn: Connection, space: Space, vector: np.ndarray, key: str, k: int, *, ef_search: int | None,
               max_age: timedelta | None) -> list[Row]:
    """The ``k`` entries nearest ``vector`` (``entry_id, key, blob_key, detail, distance``, the
    evidence of its own threshold ``serves_right, serves_wrong, right_score, wrong_score``, and
    ``banned``: whether ``key`` may not be served by it), nearest first."""
    return conn.execute(_candidates_sql(space, ef_search, _seconds(max_age)),
                        {"vec": vector, "k": k, "key": key}).all()


def explain_candidates(conn: Connection, space: Space, vector: np.ndarray, key: str, k: int, *,
                       max_age: timedelta | None) -> str:
    """The query plan of `candidates` (EXPLAIN, not run)."""
    statement = text("EXPLAIN " + _search_sql(space, _seconds(max_age))).bindparams(vectors.bind("vec"))
    return "\n".join(conn.execute(statement, {"vec": vector, "k": k, "key": key}).scalars())


# ---------------------------------------------------------------------- events


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
_ERROR_EVENT_SQL = text("""
    INSERT INTO semcache_events (query, key, kind, threshold, space_id, embedded, embed_ms,
                                 search_ms, generate_ms, blob_ms, total_ms, error)
    VALUES (:query, :key, 'error', :threshold, :space_id, :embedded, :embed_ms, :search_ms,
            :generate_ms, :blob_ms, :total_ms, :error)
""")
_RECENT_EVENTS_SQL = text("""
    SELECT id, at, query, key, kind, served_key, distance, threshold, embedded, embed_ms,
           search_ms, generate_ms, blob_ms, total_ms, cost_spent_usd, cost_saved_usd, error
    FROM semcache_events ORDER BY id DESC LIMIT :limit""")


def record_event(conn: Connection, event: dict) -> None:
    """One lookup's row: ``event`` holds every column of `_EVENT_COLUMNS` (``spent``, ``saved``
    for the costs). A hit is not waited for on disk; a generation is."""
    conn.execute(_GENERATED_EVENT_SQL if event["kind"] == "generated" else _HIT_EVENT_SQL, event)


def record_error(conn: Connection, event: dict) -> None:
    conn.execute(_ERROR_EVENT_SQL, event)


def recent_events(conn: Connection, limit: int) -> list[Row]:
    return conn.execute(_RECENT_EVENTS_SQL, {"limit": limit}).all()


# ---------------------------------------------------------------------- claims (one generation per key)


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


def claim(conn: Connection, canon: str, key: str, owner: str, lease_seconds: float) -> bool:
    """Claim the dictionary form ``canon`` for ``owner``'s generation; False when another holds it."""
    return conn.execute(_CLAIM_SQL, {"canon": canon, "key": key, "owner": owner,
                                     "lease": lease_seconds}).first() is not None


def held(conn: Connection, canon: str) -> bool:
    """Whether ``canon`` is claimed by a lease that has not run out."""
    return bool(conn.execute(_HELD_SQL, {"canon": canon}).scalar())


def unclaim(conn: Connection, canon: str, owner: str) -> None:
    conn.execute(_UNCLAIM_SQL, {"canon": canon, "owner": owner})


def renew(conn: Connection, owners: Sequence[str], lease_seconds: float) -> None:
    conn.execute(_RENEW_SQL, {"lease": lease_seconds, "owners": list(owners)})


def any_entry(conn: Connection, key: str, canon: str) -> Row | None:
    """The entry of ``key`` (or else of its dictionary form), fresh or not, with ``created_at``."""
    return conn.execute(_SECOND_LOOK_SQL, {"key": key, "canon": canon}).one_or_none()


# ---------------------------------------------------------------------- entries


_ADD_ENTRY_SQL = text("""
    INSERT INTO semcache_entries (key, canon, phrase, blob_key, content_type, size_bytes, generator,
                                  detail, cost_usd)
    VALUES (:key, :canon, :phrase, :blob_key, 'image/png', :size, :generator, :detail, :cost)
    ON CONFLICT (key) DO NOTHING
    RETURNING id
""")
_DELETE_ENTRY_SQL = text("DELETE FROM semcache_entries WHERE id = :id")
_DELETE_KEY_SQL = text("DELETE FROM semcache_entries WHERE key = :key RETURNING blob_key")
_BLOBS_IN_USE_SQL = text("SELECT DISTINCT blob_key FROM semcache_entries WHERE blob_key = ANY(:keys)")
_ENTRY_SQL = """
    SELECT e.id, e.key, e.phrase, e.blob_key, e.size_bytes, e.generator, e.detail, e.cost_usd,
           e.created_at, COALESCE(s.times_served, 0) AS times_served, s.last_served_at,
           e.serves_right, e.serves_wrong, e.right_score, e.wrong_score
    FROM semcache_entries e
    LEFT JOIN LATERAL (
        SELECT count(*) AS times_served, max(at) AS last_served_at
        FROM semcache_events v WHERE v.entry_id = e.id AND v.kind IN ('exact', 'semantic')
    ) s ON true
"""
_ENTRIES_SQL = text(_ENTRY_SQL + " ORDER BY e.created_at DESC, e.id DESC LIMIT :limit OFFSET :offset")
_ENTRY_BY_KEY_SQL = text(_ENTRY_SQL + " WHERE e.key = :key")
_UNINDEXED_SQL = text("""
    SELECT e.id, e.key FROM semcache_entries e
    LEFT JOIN semcache_embeddings v ON v.space_id = :s AND v.key = e.key
    WHERE v.key IS NULL OR v.entry_id IS DISTINCT FROM e.id
    ORDER BY e.id""")


def add_entry(conn: Connection, *, key: str, canon: str, phrase: str, blob_key: str, size: int, generator: str,
              detail: str, cost: float) -> int | None:
    """The new entry's id; None when ``key`` already has one."""
    return conn.execute(_ADD_ENTRY_SQL, {"key": key, "canon": canon, "phrase": phrase, "blob_key": blob_key,
                                         "size": size, "generator": generator, "detail": detail,
                                         "cost": cost}).scalar()


def delete_entry(conn: Connection, entry_id: int) -> None:
    conn.execute(_DELETE_ENTRY_SQL, {"id": entry_id})


_REPLACE_PICTURE_SQL = text("""
    UPDATE semcache_entries
    SET blob_key = :blob_key, size_bytes = :size, generator = :generator, detail = :detail,
        cost_usd = cost_usd + :cost
    WHERE id = :id AND blob_key = :old_blob_key
    RETURNING id""")
_PICTURES_MADE_SQL = text(
    "SELECT count(*) FROM semcache_events WHERE entry_id = :id AND kind = 'generated'")


def replace_picture(conn: Connection, entry_id: int, old_blob_key: str, *, blob_key: str, size: int,
                    generator: str, detail: str, cost: float) -> bool:
    """Give the entry a new picture (its cost added to the entry's), only while it still shows
    ``old_blob_key``; False when it is gone or was given another picture meanwhile."""
    return conn.execute(_REPLACE_PICTURE_SQL, {
        "id": entry_id, "old_blob_key": old_blob_key, "blob_key": blob_key, "size": size,
        "generator": generator, "detail": detail, "cost": cost}).scalar() is not None


def pictures_made(conn: Connection, entry_id: int) -> int:
    """How many pictures were generated for the entry (its first and every regeneration)."""
    return int(conn.execute(_PICTURES_MADE_SQL, {"id": entry_id}).scalar_one())


def delete_key(conn: Connection, key: str) -> str | None:
    """Delete the entry of ``key``; its blob key, None when there was none."""
    return conn.execute(_DELETE_KEY_SQL, {"key": key}).scalar()


def blobs_in_use(conn: Connection, blob_keys: Sequence[str]) -> set[str]:
    """Those of ``blob_keys`` that an entry refers to."""
    return set(conn.execute(_BLOBS_IN_USE_SQL, {"keys": list(blob_keys)}).scalars())


def entries(conn: Connection, limit: int, offset: int) -> list[Row]:
    """Entries newest first, with ``times_served`` and ``last_served_at``."""
    return conn.execute(_ENTRIES_SQL, {"limit": limit, "offset": offset}).all()


def entry(conn: Connection, key: str) -> Row | None:
    return conn.execute(_ENTRY_BY_KEY_SQL, {"key": key}).one_or_none()


def unindexed(conn: Connection, space: Space) -> list[Row]:
    """Entries (``id, key``) whose vector ``space`` does not hold as theirs, oldest first."""
    return conn.execute(_UNINDEXED_SQL, {"s": space.id}).all()


def evict(conn: Connection, *, max_age: timedelta | None, max_entries: int | None) -> list[str]:
    """Delete entries older than ``max_age`` and all but the ``max_entries`` most recently served
    (or made); the blob keys of the deleted entries."""
    clauses = []
    if max_age is not None:
        clauses.append("SELECT id FROM semcache_entries WHERE created_at < now() - :age")
    if max_entries is not None:
        clauses.append("""
            SELECT e.id FROM semcache_entries e
            LEFT JOIN LATERAL (SELECT max(at) AS last FROM semcache_events v
                               WHERE v.entry_id = e.id) s ON true
            ORDER BY GREATEST(s.last, e.created_at) DESC, e.id DESC
            OFFSET :keep""")
    if not clauses:
        return []
    return conn.execute(text(f"DELETE FROM semcache_entries WHERE id IN ({' UNION '.join(clauses)}) "
                             "RETURNING blob_key"), {"age": max_age, "keep": max_entries}).scalars().all()


# ---------------------------------------------------------------------- feedback


_FEEDBACK_SQL = text("""
    INSERT INTO semcache_feedback (query_key, entry_key, verdict, distance, score, blob_hash, note, actor)
    VALUES (:q, :e, :v, :d, :score, (SELECT left(blob_key, 64) FROM semcache_entries WHERE key = :e), :note, :actor)
    ON CONFLICT (query_key, entry_key) DO UPDATE
    SET verdict = excluded.verdict, distance = excluded.distance, score = excluded.score,
        blob_hash = COALESCE(excluded.blob_hash, semcache_feedback.blob_hash), note = excluded.note,
        actor = excluded.actor, created_at = now()
""")
_ENTRY_EVIDENCE_SQL = text(ENTRY_EVIDENCE_SQL.format(where="e.key = :e"))
_PAIR_DISTANCE_SQL = text("""
    SELECT a.embedding <=> b.embedding FROM semcache_embeddings a JOIN semcache_embeddings b
    ON b.space_id = a.space_id AND b.key = :e WHERE a.space_id = :s AND a.key = :q""")
_FEEDBACK_LIST_SQL = text("SELECT query_key, entry_key, verdict, distance, note, actor, created_at "
                          "FROM semcache_feedback ORDER BY created_at DESC")
_VERDICTS_SQL = text("SELECT entry_key, query_key, verdict FROM semcache_feedback ORDER BY created_at")


def record_verdict(conn: Connection, query_key: str, entry_key: str, verdict: str, distance: float | None,
                   note: str, actor: str, score: float | None = None) -> None:
    """The verdict (with the picture the entry shows now), and the entry's evidence counted again."""
    conn.execute(_FEEDBACK_SQL, {"q": query_key, "e": entry_key, "v": verdict, "d": distance, "score": score,
                                 "note": note, "actor": actor})
    conn.execute(_ENTRY_EVIDENCE_SQL, {"e": entry_key})


def pair_distance(conn: Connection, space: Space, query_key: str, entry_key: str) -> float | None:
    """The cosine distance of two phrases' cached vectors in ``space``; None unless both are there."""
    return conn.execute(_PAIR_DISTANCE_SQL, {"s": space.id, "q": query_key, "e": entry_key}).scalar()


def feedback(conn: Connection) -> list[Row]:
    """Every verdict, newest first."""
    return conn.execute(_FEEDBACK_LIST_SQL).all()


def verdicts(conn: Connection) -> list[Row]:
    """``(entry_key, query_key, verdict)`` of every verdict, oldest first."""
    return conn.execute(_VERDICTS_SQL).all()


# ---------------------------------------------------------------------- the daily usage (the cost guard)


_ADD_USAGE_SQL = text("INSERT INTO semcache_usage (day, actor) SELECT :day, unnest(CAST(:who AS text[])) "
                      "ON CONFLICT DO NOTHING")
_CHARGE_EVERYONE_SQL = text("""
    UPDATE semcache_usage SET images = images + 1, spent_usd = spent_usd + CAST(:price AS numeric)
    WHERE day = :day AND actor = :everyone
      AND (CAST(:budget AS numeric) IS NULL OR spent_usd + CAST(:price AS numeric) <= CAST(:budget AS numeric))
    RETURNING 1""")
_CHARGE_USER_SQL = text("""
    UPDATE semcache_usage SET images = images + 1, spent_usd = spent_usd + CAST(:price AS numeric)
    WHERE day = :day AND actor = :actor AND (CAST(:limit AS integer) IS NULL OR images < :limit)
    RETURNING 1""")
_REFUND_SQL = text("""
    UPDATE semcache_usage SET images = greatest(images - 1, 0),
           spent_usd = greatest(spent_usd - CAST(:price AS numeric), 0)
    WHERE day = :day AND actor = ANY(CAST(:who AS text[]))""")
_USAGE_SQL = text("SELECT actor, images, spent_usd FROM semcache_usage WHERE day = :day AND actor = ANY(:who)")


def add_usage_rows(conn: Connection, day: date, actors: Sequence[str]) -> None:
    conn.execute(_ADD_USAGE_SQL, {"day": day, "who": list(actors)})


def charge_everyone(conn: Connection, day: date, everyone: str, price: float, budget: float | None) -> bool:
    """Count one picture in everyone's row unless it would pass ``budget``; whether it was counted."""
    return conn.execute(_CHARGE_EVERYONE_SQL, {"day": day, "everyone": everyone, "price": price,
                                               "budget": budget}).first() is not None


def charge_user(conn: Connection, day: date, actor: str, price: float, limit: int | None) -> bool:
    """Count one picture in ``actor``'s row unless it would pass ``limit``; whether it was counted."""
    return conn.execute(_CHARGE_USER_SQL, {"day": day, "actor": actor, "price": price,
                                           "limit": limit}).first() is not None


def refund(conn: Connection, day: date, actors: Sequence[str], price: float) -> None:
    conn.execute(_REFUND_SQL, {"day": day, "price": price, "who": list(actors)})


def usage(conn: Connection, day: date, actors: Sequence[str]) -> dict[str, Row]:
    """The day's rows (``actor, images, spent_usd``) of those actors that have one."""
    return {row.actor: row for row in conn.execute(_USAGE_SQL, {"day": day, "who": list(actors)})}


# ---------------------------------------------------------------------- figures over the events


_TOTALS_SQL = text("""
    SELECT (SELECT count(*) FROM semcache_entries) AS entries,
           count(*) AS lookups,
           count(*) FILTER (WHERE kind = 'exact') AS exact_hits,
           count(*) FILTER (WHERE kind = 'semantic') AS semantic_hits,
           count(*) FILTER (WHERE kind = 'generated') AS generations,
           count(*) FILTER (WHERE kind = 'error') AS errors,
           COALESCE(sum(cost_spent_usd), 0) AS spent, COALESCE(sum(cost_saved_usd), 0) AS saved
    FROM semcache_events""")
STEPS = ("total", "embed", "search", "generate", "blob")


def _percentiles(column: str) -> str:
    return (f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {column}_ms) AS {column}_p50, "
            f"percentile_cont(0.95) WITHIN GROUP (ORDER BY {column}_ms) AS {column}_p95")


_LATENCY_SQL = text(f"""
    SELECT kind, count(*) AS lookups, {', '.join(_percentiles(step) for step in STEPS)}
    FROM semcache_events
    GROUP BY kind
    ORDER BY array_position(ARRAY['exact', 'semantic', 'generated', 'error']::text[], kind::text)""")
_SPAN_SQL = text("SELECT min(at) AS first, max(at) AS last, count(*) AS n FROM semcache_events")
_BUCKETS = """
    SELECT bucket, min(at) AS first_at, max(at) AS last_at, count(*) AS lookups,
           count(*) FILTER (WHERE kind IN ('exact', 'semantic')) AS hits,
           count(*) FILTER (WHERE kind <> 'error') AS answered,
           sum(cost_saved_usd) AS saved, sum(cost_spent_usd) AS spent
    FROM numbered GROUP BY bucket"""
_TIMELINE_SQL = {
    unit: text(f"""
        WITH numbered AS (
            SELECT {bucket} AS bucket, at, kind, cost_saved_usd, cost_spent_usd
            FROM semcache_events
        ), buckets AS ({_BUCKETS})
        SELECT {'first_at' if unit != 'lookup' else 'last_at'} AS at, lookups, hits, answered,
               sum(lookups) OVER w AS lookup_number,
               sum(hits) OVER w AS cum_hits, sum(answered) OVER w AS cum_answered,
               sum(saved) OVER w AS cum_saved, sum(spent) OVER w AS cum_spent
        FROM buckets
        WINDOW w AS (ORDER BY bucket)
        ORDER BY bucket""")
    for unit, bucket in {
        "lookup": "(row_number() OVER (ORDER BY id) - 1) / :size",
        "minute": "date_trunc('minute', at)",
        "hour": "date_trunc('hour', at)",
        "day": "date_trunc('day', at)",
    }.items()
}
_HISTOGRAM_SQL = text("""
    WITH hits AS (
        SELECT floor(COALESCE(score, distance) / :width)::int AS bin FROM semcache_events
        WHERE kind = 'semantic' AND COALESCE(score, distance) IS NOT NULL
    ), bins AS (
        SELECT generate_series(0, GREATEST(max(bin), CAST(:min_bins AS int) - 1)) AS bin FROM hits
    )
    SELECT bins.bin, count(hits.bin) AS hits
    FROM bins LEFT JOIN hits ON hits.bin = bins.bin
    GROUP BY bins.bin ORDER BY bins.bin""")
_LOOKUPS_SQL = text("""
    SELECT v.id, v.at, v.query, v.key, v.kind, v.served_key, v.distance, v.threshold, v.total_ms,
           v.cost_spent_usd, v.cost_saved_usd, v.error,
           EXISTS (SELECT 1 FROM semcache_feedback f WHERE f.query_key = v.key AND f.verdict = 'wrong'
                   AND (f.entry_key = v.served_key OR f.blob_hash = (
                       SELECT left(e.blob_key, 64) FROM semcache_entries e WHERE e.id = v.entry_id))) AS banned
    FROM semcache_events v
    WHERE CAST(:kinds AS text[]) IS NULL OR v.kind = ANY(CAST(:kinds AS text[]))
    ORDER BY v.id DESC LIMIT :limit""")


def totals(conn: Connection) -> Row:
    return conn.execute(_TOTALS_SQL).one()


def latency(conn: Connection) -> list[Row]:
    """Per path: ``kind, lookups`` and ``<step>_p50`` / ``<step>_p95`` for each of `STEPS`."""
    return conn.execute(_LATENCY_SQL).all()


def span(conn: Connection) -> Row:
    """``first, last, n``: the time of the first and last lookup, and how many there were."""
    return conn.execute(_SPAN_SQL).one()


def timeline(conn: Connection, unit: str, size: int) -> list[Row]:
    """Buckets by ``unit`` (by lookup number: ``size`` lookups each), oldest first, with running sums."""
    return conn.execute(_TIMELINE_SQL[unit], {"size": size}).all()


def histogram(conn: Connection, width: float, min_bins: int) -> list[Row]:
    """Semantic hits per bin of the score (or distance) ``width`` wide, at least ``min_bins`` bins."""
    return conn.execute(_HISTOGRAM_SQL, {"width": width, "min_bins": min_bins}).all()


def lookups(conn: Connection, limit: int, kinds: Sequence[str] | None) -> list[Row]:
    """The latest events, newest first, with whether their pair is banned since."""
    return conn.execute(_LOOKUPS_SQL, {"limit": limit, "kinds": list(kinds) if kinds else None}).all()


# ---------------------------------------------------------------------- bulk work (benchmarks, operators)


def _copy_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")


def bulk_load(engine: Engine, model: str, dimensions: int, keys: Sequence[str], vectors_: np.ndarray,
              blob_key: str, *, generator: str = "fixed", chunk: int = 20_000,
              progress: Callable[[int, int], None] | None = None) -> None:
    """Entries for ``keys`` (all showing ``blob_key``, made by ``generator`` at no cost) and
    their vectors in the space of ``model``, loaded with COPY in chunks of ``chunk``, then
    analysed. The space's HNSW index is not built: `register_space` builds it (over what is
    loaded, much faster than row by row)."""
    with translated():
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("SELECT coalesce(max(id), 0) FROM semcache_entries")
            base = cur.fetchone()[0]
            cur.execute("INSERT INTO semcache_spaces (model, dimensions) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        (model, dimensions))
            cur.execute("SELECT id FROM semcache_spaces WHERE model = %s AND dimensions = %s", (model, dimensions))
            space = cur.fetchone()[0]
            # Migrations may add a column for the key's dictionary form; as for rows that predate it,
            # each entry is its own.
            cur.execute("SELECT count(*) FROM information_schema.columns "
                        "WHERE table_name = 'semcache_entries' AND column_name = 'canon'")
            canon = cur.fetchone()[0] > 0
            columns = "id, key, phrase, blob_key, size_bytes, generator, cost_usd" + (", canon" if canon else "")
            for start in range(0, len(keys), chunk):
                part = range(start, min(start + chunk, len(keys)))
                rows = io.StringIO()
                for i in part:
                    key = _copy_text(keys[i])
                    rows.write(f"{base + i + 1}\t{key}\t{key}\t{blob_key}\t100\t{generator}\t0"
                               + (f"\t{key}\n" if canon else "\n"))
                rows.seek(0)
                cur.copy_expert(f"COPY semcache_entries ({columns}) FROM STDIN", rows)
                rows = io.StringIO()
                for i in part:
                    row = ",".join(f"{x:.9g}" for x in vectors_[i].tolist())  # a float32, exactly
                    rows.write(f"{space}\t{_copy_text(keys[i])}\t[{row}]\t{base + i + 1}\n")
                rows.seek(0)
                cur.copy_expert("COPY semcache_embeddings (space_id, key, embedding, entry_id) FROM STDIN", rows)
                raw.commit()
                if progress:
                    progress(part.stop, len(keys))
            cur.execute("SELECT setval('semcache_entries_id_seq', (SELECT max(id) FROM semcache_entries))")
            cur.execute("ANALYZE semcache_entries")
            cur.execute("ANALYZE semcache_embeddings")
            raw.commit()
        finally:
            raw.close()


_INDEXES_SQL = text("SELECT indexname FROM pg_indexes WHERE indexname LIKE :p")


def empty(conn: Connection) -> None:
    """Every cache table emptied and the per-space HNSW indexes dropped."""
    for name in conn.execute(_INDEXES_SQL, {"p": RUNTIME_INDEX_PREFIX + "%"}).scalars():
        conn.execute(text(f'DROP INDEX "{name}"'))
    conn.execute(text(f"TRUNCATE {', '.join(CACHE_TABLES)} RESTART IDENTITY CASCADE"))


def forget(conn: Connection, keys: Sequence[str]) -> None:
    """The events, and the entries and cached vectors of ``keys``, gone: the cache as it was
    before they were looked up."""
    conn.execute(text("TRUNCATE semcache_events"))
    conn.execute(text("DELETE FROM semcache_entries WHERE key = ANY(:k)"), {"k": list(keys)})
    conn.execute(text("DELETE FROM semcache_embeddings WHERE key = ANY(:k)"), {"k": list(keys)})


def vacuum(engine: Engine) -> None:
    """VACUUM the entries and their vectors (outside a transaction)."""
    with translated(), engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            text("VACUUM semcache_embeddings, semcache_entries"))


def generations_per_key(conn: Connection) -> dict[str, int]:
    return dict(conn.execute(text(
        "SELECT key, count(*) FROM semcache_events WHERE kind = 'generated' GROUP BY key")).all())


def sizes(conn: Connection) -> dict[str, float]:
    """Bytes of the cache's tables, its HNSW indexes and the whole database."""
    one = lambda sql, **p: float(conn.execute(text(sql), p).scalar() or 0)  # noqa: E731
    return {"embeddings_table": one("SELECT pg_table_size('semcache_embeddings')"),
            "entries_table": one("SELECT pg_table_size('semcache_entries')"),
            "hnsw_index": one("SELECT sum(pg_relation_size(format('%I', indexname))) FROM pg_indexes "
                              "WHERE indexname LIKE :p", p=RUNTIME_INDEX_PREFIX + "%"),
            "database": one("SELECT pg_database_size(current_database())")}


def nearest_key(conn: Connection, space: Space, vector: np.ndarray, *, ef_search: int | None = None,
                scan: bool = False) -> str | None:
    """The key nearest ``vector`` by itself (no threshold, bans or age): through the space's HNSW
    index at ``ef_search``, or with ``scan`` an exact scan over every entry's vector. The caller
    rolls back (the breadth is a SET LOCAL)."""
    return conn.execute(_nearest_key_sql(space, ef_search, scan), {"v": vector}).scalar()


def explain_nearest_key(conn: Connection, space: Space, vector: np.ndarray, *, ef_search: int | None = None) -> str:
    statement = _nearest_key_sql(space, ef_search, False, explain=True)
    return "\n".join(conn.execute(statement, {"v": vector}).scalars())


@functools.cache
def _nearest_key_sql(space: Space, ef_search: int | None, scan: bool, explain: bool = False) -> TextClause:
    if scan:
        sql = ("SELECT key FROM semcache_embeddings WHERE entry_id IS NOT NULL "
               "ORDER BY embedding <=> CAST(:v AS vector) LIMIT 1")
    else:
        sql = (f"SET LOCAL hnsw.ef_search = {int(ef_search or 40)};" + ("EXPLAIN " if explain else "")
               + f"SELECT key FROM semcache_embeddings WHERE {space.predicate} "
               f"ORDER BY embedding::{space.cast} <=> CAST(:v AS {space.cast}) LIMIT 1")
    return text(sql).bindparams(vectors.bind("v"))
