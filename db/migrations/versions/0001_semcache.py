"""The semantic image cache: pgvector, settings, embedding spaces, entries, embeddings,
feedback and lookup events.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute("""
        CREATE TABLE semcache_settings (
            name varchar(64) PRIMARY KEY,
            value jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            updated_by text
        )""")
    op.execute("""
        CREATE TABLE semcache_spaces (
            id serial PRIMARY KEY,
            model text NOT NULL,
            dimensions integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT semcache_spaces_model_dimensions_key UNIQUE (model, dimensions),
            CONSTRAINT semcache_spaces_dimensions_check CHECK (dimensions > 0 AND dimensions <= 16000)
        )""")
    op.execute("""
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
        )""")
    op.execute("CREATE INDEX semcache_entries_created_at_idx ON semcache_entries (created_at)")
    op.execute("CREATE INDEX semcache_entries_blob_key_idx ON semcache_entries (blob_key)")
    op.execute("""
        CREATE TABLE semcache_embeddings (
            space_id integer NOT NULL REFERENCES semcache_spaces (id) ON DELETE CASCADE,
            key text NOT NULL,
            embedding vector NOT NULL,
            entry_id bigint REFERENCES semcache_entries (id) ON DELETE SET NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (space_id, key)
        )""")
    op.execute("CREATE INDEX semcache_embeddings_entry_id_idx ON semcache_embeddings (entry_id)")
    op.execute("""
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
        )""")
    op.execute("""
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
        )""")
    op.execute("CREATE INDEX semcache_events_at_idx ON semcache_events (at)")
    op.execute("CREATE INDEX semcache_events_entry_id_idx ON semcache_events (entry_id)")


def downgrade() -> None:
    for table in ("semcache_events", "semcache_feedback", "semcache_embeddings", "semcache_entries",
                  "semcache_spaces", "semcache_settings"):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
