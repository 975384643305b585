"""The cache's tables. The application's migrations create them; `metadata` mirrors them.

Vectors of every embedding model live in one table, in an untyped `vector` column. Each
embedding space (model + dimensions) gets its own partial HNSW index over an expression that
casts to the space's fixed type, `vector(n)` or, above 2,000 dimensions, `halfvec(n)`; queries
repeat that expression and the space's predicate so the planner picks the index.
"""

from __future__ import annotations

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger, Boolean, CheckConstraint, Column, Date, DateTime, Float, ForeignKey, Index, Integer, MetaData,
    Numeric, String, Table, Text, UniqueConstraint, func, text,
)
from sqlalchemy.dialects.postgresql import JSONB

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
    CheckConstraint("verdict IN ('wrong', 'right')", name="semcache_feedback_verdict_check"),
)
"""A product owner's judgement of "query was served by entry": `wrong` bans the pair."""

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
