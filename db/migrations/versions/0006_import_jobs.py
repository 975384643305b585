"""Imports as durable jobs: procrastinate's queue (its schema, from the installed package) and
the table of imports the Import page lists, with their progress and outcome.

Alembic runs this once per database, inside the advisory lock of `db/migrations/env.py`, so
several processes starting at once apply the queue's schema exactly once.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from procrastinate.schema import SchemaManager

    bind = op.get_bind()
    if bind.exec_driver_sql("SELECT to_regclass('procrastinate_jobs')").scalar() is None:
        # On the driver's own cursor with no parameters, the script is sent as it is (its
        # RAISE '... %' lines are not placeholders), in the migration's transaction.
        cursor = bind.connection.cursor()
        try:
            cursor.execute(SchemaManager.get_schema())
        finally:
            cursor.close()
    op.execute("""
        CREATE TABLE mail_imports (
            id bigserial PRIMARY KEY,
            owner text NOT NULL,
            kind text NOT NULL CHECK (kind IN ('upload', 'path', 'imap', 'demo')),
            label text NOT NULL,
            params jsonb NOT NULL DEFAULT '{}'::jsonb,
            secret bytea,
            status text NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            done integer NOT NULL DEFAULT 0,
            total integer,
            rate double precision,
            eta_seconds double precision,
            imported integer NOT NULL DEFAULT 0,
            duplicates integer NOT NULL DEFAULT 0,
            failed integer NOT NULL DEFAULT 0,
            failures jsonb NOT NULL DEFAULT '[]'::jsonb,
            embedded boolean NOT NULL DEFAULT true,
            error text,
            cancel_requested boolean NOT NULL DEFAULT false,
            attempt integer NOT NULL DEFAULT 0,
            job_id bigint,
            created_at timestamptz NOT NULL DEFAULT now(),
            started_at timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz
        )""")
    op.execute("CREATE INDEX mail_imports_owner_idx ON mail_imports (owner, id DESC)")
    op.execute("CREATE INDEX mail_imports_unfinished_idx ON mail_imports (owner) "
               "WHERE status IN ('queued', 'running')")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS mail_imports")
    for table in ("procrastinate_events", "procrastinate_periodic_defers", "procrastinate_jobs",
                  "procrastinate_workers"):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    op.execute("""
        DO $$ DECLARE f record; BEGIN
            FOR f IN SELECT oid::regprocedure AS sig FROM pg_proc WHERE proname LIKE 'procrastinate\\_%' LOOP
                EXECUTE 'DROP FUNCTION IF EXISTS ' || f.sig || ' CASCADE';
            END LOOP;
        END $$""")
    for type_name in ("procrastinate_job_to_defer_v1", "procrastinate_job_event_type", "procrastinate_job_status"):
        op.execute(f"DROP TYPE IF EXISTS {type_name} CASCADE")
