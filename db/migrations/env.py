"""Alembic environment: runs on the connection `db.migrate()` hands over, or on DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from db.engine import MIGRATION_LOCK_ID
from db.models import include_object, metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        from db.engine import create_db_engine, embedded_postgres_url
        from settings import get_settings

        settings = get_settings()
        url = settings.database_url or embedded_postgres_url(settings.data_dir / "postgres")
        with create_db_engine(url).begin() as connection:
            _run(connection)
    else:
        _run(connection)


def _run(connection) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    context.configure(connection=connection, target_metadata=metadata, include_object=include_object, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
