"""The cache's second look at a match: each entry's dictionary form (so "dogs" finds "dog" on the
exact path), and on each lookup event the relation that decided it and the score it was held to.

The library's step 2 (`semcache.schema`); a downgrade leaves the cache's tables.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from semcache.schema import upgrade as upgrade_cache

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    upgrade_cache(op.get_bind(), to=2)


def downgrade() -> None:
    pass
