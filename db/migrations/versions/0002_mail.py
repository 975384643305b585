"""Mail: messages per owner with a weighted full-text vector, their embeddings per model, and
the IMAP import state.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE mail_messages (
            id bigserial PRIMARY KEY,
            owner text NOT NULL,
            message_id text,
            content_hash text NOT NULL,
            thread_id text NOT NULL,
            in_reply_to text,
            subject text NOT NULL DEFAULT '',
            from_name text NOT NULL DEFAULT '',
            from_addr text NOT NULL DEFAULT '',
            to_addrs text[] NOT NULL DEFAULT '{}',
            cc_addrs text[] NOT NULL DEFAULT '{}',
            sent_at timestamptz,
            body text NOT NULL DEFAULT '',
            excerpt text NOT NULL DEFAULT '',
            attachments jsonb NOT NULL DEFAULT '[]',
            is_html boolean NOT NULL DEFAULT false,
            signed boolean NOT NULL DEFAULT false,
            size_bytes integer NOT NULL DEFAULT 0,
            folder text,
            source text NOT NULL DEFAULT '',
            imported_at timestamptz NOT NULL DEFAULT now(),
            has_attachments boolean GENERATED ALWAYS AS (jsonb_array_length(attachments) > 0) STORED,
            tsv tsvector GENERATED ALWAYS AS (
                setweight(to_tsvector('english', subject), 'A') ||
                setweight(to_tsvector('english', from_name || ' ' || from_addr), 'B') ||
                setweight(to_tsvector('english', left(body, 200000)), 'C')
            ) STORED
        )""")
    op.execute("CREATE UNIQUE INDEX mail_messages_owner_message_id_key ON mail_messages (owner, message_id) "
               "WHERE message_id IS NOT NULL")
    op.execute("CREATE UNIQUE INDEX mail_messages_owner_content_hash_key ON mail_messages (owner, content_hash) "
               "WHERE message_id IS NULL")
    op.execute("CREATE INDEX mail_messages_owner_sent_at_idx ON mail_messages (owner, sent_at DESC)")
    op.execute("CREATE INDEX mail_messages_owner_thread_idx ON mail_messages (owner, thread_id)")
    op.execute("CREATE INDEX mail_messages_tsv_idx ON mail_messages USING gin (tsv)")
    op.execute("""
        CREATE TABLE mail_embeddings (
            message_pk bigint NOT NULL REFERENCES mail_messages (id) ON DELETE CASCADE,
            owner text NOT NULL,
            model text NOT NULL,
            dimensions integer NOT NULL,
            embedding vector NOT NULL,
            PRIMARY KEY (message_pk, model, dimensions)
        )""")
    op.execute("CREATE INDEX mail_embeddings_owner_idx ON mail_embeddings (owner)")
    op.execute("""
        CREATE TABLE mail_imap_state (
            owner text NOT NULL,
            account text NOT NULL,
            folder text NOT NULL,
            uidvalidity bigint NOT NULL,
            last_uid bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (owner, account, folder)
        )""")


def downgrade() -> None:
    for table in ("mail_imap_state", "mail_embeddings", "mail_messages"):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
