"""The cache's second look at a match: each entry's dictionary form (so "dogs" finds "dog" on the
exact path), and on each lookup event the relation that decided it and the score it was held to.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE semcache_entries ADD COLUMN canon text")
    op.execute("UPDATE semcache_entries SET canon = key")
    op.execute("CREATE INDEX semcache_entries_canon_idx ON semcache_entries (canon)")
    op.execute("ALTER TABLE semcache_events ADD COLUMN relation varchar(16)")
    op.execute("ALTER TABLE semcache_events ADD COLUMN score double precision")


def downgrade() -> None:
    op.execute("ALTER TABLE semcache_events DROP COLUMN IF EXISTS score")
    op.execute("ALTER TABLE semcache_events DROP COLUMN IF EXISTS relation")
    op.execute("DROP INDEX IF EXISTS semcache_entries_canon_idx")
    op.execute("ALTER TABLE semcache_entries DROP COLUMN IF EXISTS canon")
