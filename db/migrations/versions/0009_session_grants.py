"""One-time sign-in codes: what a fresh sign-in hands to the browser so that the app's own
endpoint can put the session in an HttpOnly cookie (the token never passes through the page).

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE app_session_grants (
            code_hash text PRIMARY KEY,
            username text NOT NULL REFERENCES app_users (username) ON DELETE CASCADE,
            expires_at timestamptz NOT NULL
        )""")
    op.execute("CREATE INDEX app_session_grants_expires_at_idx ON app_session_grants (expires_at)")
    op.execute("CREATE INDEX app_session_grants_username_idx ON app_session_grants (username)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS app_session_grants")
