"""Limits on accounts: the wrong sign-ins at names that have no account (so they lock like an
account does), and the recent sign-ups with their client address (for the hourly limits).

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE app_sign_in_failures (
            username text PRIMARY KEY,
            failed_sign_ins integer NOT NULL DEFAULT 0,
            locked_until timestamptz,
            last_failed_at timestamptz NOT NULL DEFAULT now()
        )""")
    op.execute("CREATE INDEX app_sign_in_failures_last_failed_at_idx ON app_sign_in_failures (last_failed_at)")
    op.execute("""
        CREATE TABLE app_signups (
            username text PRIMARY KEY REFERENCES app_users (username) ON DELETE CASCADE,
            client text,
            created_at timestamptz NOT NULL DEFAULT now()
        )""")
    op.execute("CREATE INDEX app_signups_created_at_idx ON app_signups (created_at)")
    op.execute("CREATE INDEX app_signups_client_idx ON app_signups (client, created_at)")


def downgrade() -> None:
    for table in ("app_signups", "app_sign_in_failures"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
