"""The image cache's miss path: a key being generated is claimed in a committed row with a lease,
so no pooled connection is held while the generator runs.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE semcache_pending (
            canon text PRIMARY KEY,
            key text NOT NULL,
            owner text NOT NULL,
            claimed_at timestamptz NOT NULL DEFAULT now(),
            lease_until timestamptz NOT NULL
        )""")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS semcache_pending")
