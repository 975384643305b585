"""The cache's tables, and the migrations that make them: the cache owns its schema.

    from semcache.schema import upgrade
    upgrade(engine)          # before the first SemanticCache on a database; cheap when up to date

`upgrade` runs the numbered steps of `MIGRATIONS` that the database has not had yet, each
recorded in `semcache_migrations` (version, name, when, whether it was adopted), all in the
caller's transaction (or one of its own, given an engine) under a PostgreSQL advisory lock, so
processes starting together apply each step once and the others find it done. Running it again
changes nothing. A step, once released, never changes: a new schema is a new step.

A database whose cache tables were made before the cache kept this record (by an application's
own migrations that created the same tables) is adopted: on the first run the leading steps
whose tables are already there are recorded as adopted, nothing is recreated, and only the
steps after them run. `upgrade(bind, to=N)` stops at step N, so an application's historic
migrations can hand the cache's part of each revision to the step it matches.

`metadata` mirrors what the steps make, for schema checks. Vectors of every embedding model live
in one table, in an untyped `vector` column. Each embedding space (model + dimensions) gets its
own partial HNSW index, made at run time when the cache meets the space (not by a step), over an
expression that casts to the space's fixed type, `vector(n)` or, above 2,000 dimensions,
`halfvec(n)`; queries repeat that expression and the space's predicate so the planner picks the
index.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger, Boolean, CheckConstraint, Column, Connection, Date, DateTime, Engine, Float, ForeignKey, Index, Integer,
    MetaData, Numeric, String, Table, Text, UniqueConstraint, func, text,
)
from sqlalchemy.dialects.postgresql import JSONB

from semcache.errors import SemcacheError

metadata = MetaData()

RUNTIME_INDEX_PREFIX = "semcache_embeddings_hnsw_space_"
"""Name prefix of the per-space HNSW indexes the cache creates when it meets a new space."""

settings = Table(
    "semcache_settings", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_by", Text),
)

spaces = Table(
    "semcache_spaces", metadata,
    Column("id", Integer, primary_key=True),
    Column("model", Text, nullable=False),
    Column("dimensions", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("threshold", Float),
    Column("threshold_set_at", DateTime(timezone=True)),
    Column("threshold_set_by", Text),
    UniqueConstraint("model", "dimensions", name="semcache_spaces_model_dimensions_key"),
    CheckConstraint("dimensions > 0 AND dimensions <= 16000", name="semcache_spaces_dimensions_check"),
)

entries = Table(
    "semcache_entries", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("key", Text, nullable=False, unique=True),
    Column("canon", Text),
    Column("phrase", Text, nullable=False),
    Column("blob_key", Text, nullable=False),
    Column("content_type", Text, nullable=False, server_default="image/png"),
    Column("size_bytes", Integer, nullable=False),
    Column("generator", Text, nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
    Column("cost_usd", Numeric(12, 6), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("serves_right", Integer, nullable=False, server_default="0"),
    Column("serves_wrong", Integer, nullable=False, server_default="0"),
    Column("right_score", Float),
    Column("wrong_score", Float),
    Index("semcache_entries_created_at_idx", "created_at"),
    Index("semcache_entries_blob_key_idx", "blob_key"),
    Index("semcache_entries_canon_idx", "canon"),
)

embeddings = Table(
    "semcache_embeddings", metadata,
    Column("space_id", Integer, ForeignKey("semcache_spaces.id", ondelete="CASCADE"), primary_key=True),
    Column("key", Text, primary_key=True),
    Column("embedding", Vector(), nullable=False),
    Column("entry_id", BigInteger, ForeignKey("semcache_entries.id", ondelete="SET NULL")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("semcache_embeddings_entry_id_idx", "entry_id"),
)
"""Every phrase ever embedded, per space (the embedding cache). Rows whose phrase is a cache
entry carry its `entry_id`; only those rows are in the space's HNSW index."""

feedback = Table(
    "semcache_feedback", metadata,
    Column("query_key", Text, primary_key=True),
    Column("entry_key", Text, primary_key=True),
    Column("verdict", String(8), nullable=False),
    Column("distance", Float),
    Column("note", Text, nullable=False, server_default=""),
    Column("actor", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("score", Float),
    Column("blob_hash", Text),
    CheckConstraint("verdict IN ('wrong', 'right')", name="semcache_feedback_verdict_check"),
)
"""A product owner's judgement of "query was served by entry": `wrong` bans the pair, and every
entry showing the same picture (``blob_hash``, the sha256 of its bytes) for that query. ``score``
is the distance as the matcher counted it, what the entry's own threshold learns from."""

events = Table(
    "semcache_events", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("query", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("entry_id", BigInteger, ForeignKey("semcache_entries.id", ondelete="SET NULL")),
    Column("served_key", Text),
    Column("distance", Float),
    Column("relation", String(16)),
    Column("score", Float),
    Column("threshold", Float),
    Column("space_id", Integer, ForeignKey("semcache_spaces.id", ondelete="SET NULL")),
    Column("embedded", Boolean, nullable=False, server_default=text("false")),
    Column("embed_ms", Float),
    Column("search_ms", Float),
    Column("generate_ms", Float),
    Column("blob_ms", Float),
    Column("total_ms", Float),
    Column("cost_spent_usd", Numeric(12, 6), nullable=False, server_default="0"),
    Column("cost_saved_usd", Numeric(12, 6), nullable=False, server_default="0"),
    Column("error", Text),
    CheckConstraint("kind IN ('exact', 'semantic', 'generated', 'error')", name="semcache_events_kind_check"),
    Index("semcache_events_at_idx", "at"),
    Index("semcache_events_entry_id_idx", "entry_id"),
)
"""One row per lookup: what the settings page and the savings dashboard are built on."""

usage = Table(
    "semcache_usage", metadata,
    Column("day", Date, primary_key=True),
    Column("actor", Text, primary_key=True),
    Column("images", Integer, nullable=False, server_default="0"),
    Column("spent_usd", Numeric(12, 6), nullable=False, server_default="0"),
)
"""New pictures made per UTC day: one row per user, and the row ``*`` for everyone together
(what the cost guard holds to its limits)."""

pending = Table(
    "semcache_pending", metadata,
    Column("canon", Text, primary_key=True),
    Column("key", Text, nullable=False),
    Column("owner", Text, nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("lease_until", DateTime(timezone=True), nullable=False),
)
"""Keys being generated right now, one row per dictionary form: the claim of the lookup making
it (``owner``, a token of that lookup) until ``lease_until``, which its process renews while
the generator runs. A row whose lease ran out belongs to a process that died: anyone may take
it over."""

migrations = Table(
    "semcache_migrations", metadata,
    Column("version", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("adopted", Boolean, nullable=False, server_default=text("false")),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
"""The steps of `MIGRATIONS` this database has had; ``adopted`` when its tables were there
already (made by an application's migrations before the cache kept this record)."""


# ---------------------------------------------------------------------------- migrations

LEGACY_THRESHOLD = "threshold"
"""The `semcache_settings` row that held the one threshold of every space before step 5."""
LEGACY_THRESHOLD_COPY = (
    "threshold = CASE WHEN jsonb_typeof(l.value) = 'number' THEN (l.value #>> '{}')::double precision END, "
    "threshold_set_at = l.updated_at, threshold_set_by = l.updated_by "
    f"FROM semcache_settings l WHERE l.name = '{LEGACY_THRESHOLD}'")
"""SET clause of an UPDATE of semcache_spaces that adopts that row's value, when and by whom."""

ENTRY_EVIDENCE_SQL = """
    UPDATE semcache_entries e SET (serves_right, serves_wrong, right_score, wrong_score) = (
        SELECT count(*) FILTER (WHERE f.verdict = 'right'), count(*) FILTER (WHERE f.verdict = 'wrong'),
               max(f.score) FILTER (WHERE f.verdict = 'right' AND f.score < COALESCE(
                   (SELECT min(w.score) FROM semcache_feedback w WHERE w.entry_key = e.key AND w.verdict = 'wrong'),
                   'Infinity')),
               min(f.score) FILTER (WHERE f.verdict = 'wrong')
        FROM semcache_feedback f WHERE f.entry_key = e.key)
    WHERE {where}"""
"""An entry's evidence from its verdicts (`semcache.matching.EntryEvidence`): how often it was
served rightly and wrongly, the smallest wrong score and the largest right one below it."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    present: str
    """A query answering whether this step's tables are already there, for adopting a database
    that has them but no record."""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial", (
        "CREATE EXTENSION IF NOT EXISTS vector",
        """
        CREATE TABLE semcache_settings (
            name varchar(64) PRIMARY KEY,
            value jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            updated_by text
        )""",
        """
        CREATE TABLE semcache_spaces (
            id serial PRIMARY KEY,
            model text NOT NULL,
            dimensions integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT semcache_spaces_model_dimensions_key UNIQUE (model, dimensions),
            CONSTRAINT semcache_spaces_dimensions_check CHECK (dimensions > 0 AND dimensions <= 16000)
        )""",
        """
        CREATE TABLE semcache_entries (
            id bigserial PRIMARY KEY,
            key text NOT NULL UNIQUE,
            phrase text NOT NULL,
            blob_key text NOT NULL,
            content_type text NOT NULL DEFAULT 'image/png',
            size_bytes integer NOT NULL,
            generator text NOT NULL,
            detail text NOT NULL DEFAULT '',
            cost_usd numeric(12, 6) NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )""",
        "CREATE INDEX semcache_entries_created_at_idx ON semcache_entries (created_at)",
        "CREATE INDEX semcache_entries_blob_key_idx ON semcache_entries (blob_key)",
        """
        CREATE TABLE semcache_embeddings (
            space_id integer NOT NULL REFERENCES semcache_spaces (id) ON DELETE CASCADE,
            key text NOT NULL,
            embedding vector NOT NULL,
            entry_id bigint REFERENCES semcache_entries (id) ON DELETE SET NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (space_id, key)
        )""",
        "CREATE INDEX semcache_embeddings_entry_id_idx ON semcache_embeddings (entry_id)",
        """
        CREATE TABLE semcache_feedback (
            query_key text NOT NULL,
            entry_key text NOT NULL,
            verdict varchar(8) NOT NULL,
            distance double precision,
            note text NOT NULL DEFAULT '',
            actor text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (query_key, entry_key),
            CONSTRAINT semcache_feedback_verdict_check CHECK (verdict IN ('wrong', 'right'))
        )""",
        """
        CREATE TABLE semcache_events (
            id bigserial PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT now(),
            query text NOT NULL,
            key text NOT NULL,
            kind varchar(16) NOT NULL,
            entry_id bigint REFERENCES semcache_entries (id) ON DELETE SET NULL,
            served_key text,
            distance double precision,
            threshold double precision,
            space_id integer REFERENCES semcache_spaces (id) ON DELETE SET NULL,
            embedded boolean NOT NULL DEFAULT false,
            embed_ms double precision,
            search_ms double precision,
            generate_ms double precision,
            blob_ms double precision,
            total_ms double precision,
            cost_spent_usd numeric(12, 6) NOT NULL DEFAULT 0,
            cost_saved_usd numeric(12, 6) NOT NULL DEFAULT 0,
            error text,
            CONSTRAINT semcache_events_kind_check CHECK (kind IN ('exact', 'semantic', 'generated', 'error'))
        )""",
        "CREATE INDEX semcache_events_at_idx ON semcache_events (at)",
        "CREATE INDEX semcache_events_entry_id_idx ON semcache_events (entry_id)",
    ), present="SELECT to_regclass('semcache_entries') IS NOT NULL"),
    Migration(2, "matching", (
        "ALTER TABLE semcache_entries ADD COLUMN canon text",
        "UPDATE semcache_entries SET canon = key",
        "CREATE INDEX semcache_entries_canon_idx ON semcache_entries (canon)",
        "ALTER TABLE semcache_events ADD COLUMN relation varchar(16)",
        "ALTER TABLE semcache_events ADD COLUMN score double precision",
    ), present="SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('semcache_entries') "
               "AND attname = 'canon' AND NOT attisdropped)"),
    Migration(3, "usage", (
        """
        CREATE TABLE semcache_usage (
            day date NOT NULL,
            actor text NOT NULL,
            images integer NOT NULL DEFAULT 0,
            spent_usd numeric(12, 6) NOT NULL DEFAULT 0,
            PRIMARY KEY (day, actor)
        )""",
    ), present="SELECT to_regclass('semcache_usage') IS NOT NULL"),
    Migration(4, "pending", (
        """
        CREATE TABLE semcache_pending (
            canon text PRIMARY KEY,
            key text NOT NULL,
            owner text NOT NULL,
            claimed_at timestamptz NOT NULL DEFAULT now(),
            lease_until timestamptz NOT NULL
        )""",
    ), present="SELECT to_regclass('semcache_pending') IS NOT NULL"),
    Migration(5, "space thresholds", (
        "ALTER TABLE semcache_spaces ADD COLUMN threshold double precision",
        "ALTER TABLE semcache_spaces ADD COLUMN threshold_set_at timestamptz",
        "ALTER TABLE semcache_spaces ADD COLUMN threshold_set_by text",
        # The one threshold of before becomes every existing space's own; with no space yet, it
        # stays until the first space is registered, which takes it (`store.register_space`).
        f"UPDATE semcache_spaces SET {LEGACY_THRESHOLD_COPY}",
        f"DELETE FROM semcache_settings WHERE name = '{LEGACY_THRESHOLD}' AND EXISTS (SELECT 1 FROM semcache_spaces)",
    ), present="SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('semcache_spaces') "
               "AND attname = 'threshold' AND NOT attisdropped)"),
    Migration(6, "entry thresholds", (
        "ALTER TABLE semcache_entries ADD COLUMN serves_right integer NOT NULL DEFAULT 0",
        "ALTER TABLE semcache_entries ADD COLUMN serves_wrong integer NOT NULL DEFAULT 0",
        "ALTER TABLE semcache_entries ADD COLUMN right_score double precision",
        "ALTER TABLE semcache_entries ADD COLUMN wrong_score double precision",
        "ALTER TABLE semcache_feedback ADD COLUMN score double precision",
        "ALTER TABLE semcache_feedback ADD COLUMN blob_hash text",
        # Verdicts of before: their distance is the best score known; their entry's picture, if it is still there.
        "UPDATE semcache_feedback f SET score = f.distance, blob_hash = (SELECT left(e.blob_key, 64) "
        "FROM semcache_entries e WHERE e.key = f.entry_key)",
        ENTRY_EVIDENCE_SQL.format(where="e.key IN (SELECT entry_key FROM semcache_feedback)"),
    ), present="SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('semcache_entries') "
               "AND attname = 'serves_right' AND NOT attisdropped)"),
)
"""The cache's schema, step by step: 1 the tables of lookups, entries, embeddings, feedback and
events; 2 each entry's dictionary form and each event's relation and score; 3 the daily spending
(the cost guard); 4 the keys being generated, with their leases (single-flight); 5 a threshold per
embedding space (the one stored threshold of before adopted by every space there was); 6 what each
entry learned from verdicts (its own threshold's evidence) and the picture each ban is about."""

LOCK_ID = 0x73656D63  # "semc": one upgrade at a time per database

_RECORD = """
    CREATE TABLE semcache_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        adopted boolean NOT NULL DEFAULT false,
        applied_at timestamptz NOT NULL DEFAULT now()
    )"""


def upgrade(bind: Engine | Connection, *, to: int | None = None) -> list[int]:
    """Bring the database's cache tables to step ``to`` (the newest when None) and return the
    versions run now (adopted ones are recorded, not run). Given a connection in a transaction,
    it runs in that transaction and the caller commits."""
    newest = MIGRATIONS[-1].version
    target = newest if to is None else to
    if not 1 <= target <= newest:
        raise ValueError(f"semcache has schema steps 1 to {newest}, not {to}.")
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            return _upgrade(connection, target)
    if bind.in_transaction():
        return _upgrade(bind, target)
    with bind.begin():
        return _upgrade(bind, target)


def _upgrade(connection: Connection, target: int) -> list[int]:
    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": LOCK_ID})
    if connection.execute(text("SELECT to_regclass('semcache_migrations')")).scalar() is None:
        connection.exec_driver_sql(_RECORD)
    done = set(connection.execute(text("SELECT version FROM semcache_migrations")).scalars())
    if not done:
        done = _adopt(connection)
    ran = []
    for step in MIGRATIONS:
        if step.version > target or step.version in done:
            continue
        for statement in step.statements:
            connection.exec_driver_sql(statement)
        _record(connection, step, adopted=False)
        ran.append(step.version)
    return ran


def _adopt(connection: Connection) -> set[int]:
    """Record, as adopted, the leading steps whose tables a database without a record has."""
    present = [bool(connection.exec_driver_sql(step.present).scalar()) for step in MIGRATIONS]
    leading = present.index(False) if False in present else len(present)
    if any(present[leading:]):
        later = MIGRATIONS[leading + present[leading:].index(True)]
        raise SemcacheError(
            f"The cache's tables are in a state no version of semcache made: step {later.version} "
            f"({later.name}) is there without step {MIGRATIONS[leading].version} "
            f"({MIGRATIONS[leading].name}). Repair or drop the semcache_* tables, then start again.")
    for step in MIGRATIONS[:leading]:
        _record(connection, step, adopted=True)
    return {step.version for step in MIGRATIONS[:leading]}


def _record(connection: Connection, step: Migration, *, adopted: bool) -> None:
    connection.execute(text("INSERT INTO semcache_migrations (version, name, adopted) VALUES (:v, :n, :a)"),
                       {"v": step.version, "n": step.name, "a": adopted})
