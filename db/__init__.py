"""Database wiring: the engine, the embedded PostgreSQL, and the migrations."""

from db.engine import create_db_engine, embedded_postgres_url, migrate

__all__ = ["create_db_engine", "embedded_postgres_url", "migrate"]
