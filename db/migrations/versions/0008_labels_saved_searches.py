"""Labels a user puts on messages, and searches a user saves by name; both per owner.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE mail_labels (
            owner text NOT NULL,
            message_pk bigint NOT NULL REFERENCES mail_messages (id) ON DELETE CASCADE,
            label text NOT NULL CHECK (char_length(label) BETWEEN 1 AND 64),
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (owner, message_pk, label)
        )""")
    op.execute("CREATE INDEX mail_labels_owner_label_idx ON mail_labels (owner, label)")
    op.execute("""
        CREATE TABLE mail_saved_searches (
            id bigserial PRIMARY KEY,
            owner text NOT NULL,
            name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 80),
            query text NOT NULL CHECK (char_length(query) BETWEEN 1 AND 1000),
            created_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (owner, name)
        )""")


def downgrade() -> None:
    for table in ("mail_saved_searches", "mail_labels"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
