"""Accounts (for AUTH_MODE=password) with their sign-in sessions, and the image cache's daily
spending per user and in total (the cost guard).

The spending table is the cache's (the library's step 3, `semcache.schema`); the accounts do
not refer to it. A downgrade removes the accounts and leaves the cache's tables.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from semcache.schema import upgrade as upgrade_cache

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE app_users (
            username text PRIMARY KEY,
            password_hash text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_sign_in_at timestamptz,
            failed_sign_ins integer NOT NULL DEFAULT 0,
            locked_until timestamptz
        )""")
    op.execute("""
        CREATE TABLE app_sessions (
            token_hash text PRIMARY KEY,
            username text NOT NULL REFERENCES app_users (username) ON DELETE CASCADE,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL
        )""")
    op.execute("CREATE INDEX app_sessions_expires_at_idx ON app_sessions (expires_at)")
    op.execute("CREATE INDEX app_sessions_username_idx ON app_sessions (username)")
    upgrade_cache(op.get_bind(), to=3)


def downgrade() -> None:
    for table in ("app_sessions", "app_users"):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
