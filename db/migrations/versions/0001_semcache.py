"""The semantic image cache: pgvector, settings, embedding spaces, entries, embeddings,
feedback and lookup events.

The cache's tables are the cache's own (`semcache.schema`): this revision runs the library's
step 1, which makes exactly what it made when it held the statements itself; on a database
whose cache tables are there already it does nothing. A downgrade leaves them.

Revision ID: 0001
Revises:
"""

from alembic import op

from semcache.schema import upgrade as upgrade_cache

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")  # the mail's embeddings need it too
    upgrade_cache(op.get_bind(), to=1)


def downgrade() -> None:
    pass
