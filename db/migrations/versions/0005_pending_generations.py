"""The image cache's miss path: a key being generated is claimed in a committed row with a lease,
so no pooled connection is held while the generator runs.

The library's step 4 (`semcache.schema`); a downgrade leaves the cache's tables.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from semcache.schema import upgrade as upgrade_cache

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    upgrade_cache(op.get_bind(), to=4)


def downgrade() -> None:
    pass
