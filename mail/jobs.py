"""Imports as durable jobs in PostgreSQL: the app saves what is to be imported, enqueues a job
with procrastinate and reads the import's row for its progress; worker processes
(`python -m mail worker`, see `mail.jobs_worker`) run the jobs, on this machine or any other.

    queue = ImportQueue(engine, job_app(conninfo), uploads=blob_store, secrets=JobSecrets(key))
    job = queue.enqueue_uploads(owner, [("inbox.mbox", data)])     # an ImportJob, "queued"
    queue.imports(owner)              # this owner's imports, newest first, with their progress
    queue.cancel(owner, job.id)

One import per owner runs at a time (procrastinate's ``lock``); the owner's others wait, queued.
An upload is kept in a blob store (a folder, or S3 when workers run on other machines) until its
import ends; an IMAP password is kept only as Fernet ciphertext in the import's row, and only
until the import ends. Nothing but the import's id goes into procrastinate's job table.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from mail import sql
from mail.importing import Security, check_imap, parse_folders
from mail.sources import open_upload, resolve_imap_host
from mail.types import ImportRefused, ImportSummary, MailError

__all__ = [
    "ACTIVE", "ImportJob", "ImportQueue", "JobSecrets", "MAX_STORED_FAILURES", "TASK_NAME",
    "job_app", "load_job", "psycopg_conninfo", "remove_uploads",
]

TASK_NAME = "mail.import"
QUEUE = "imports"
ACTIVE = ("queued", "running")
MAX_STORED_FAILURES = 1000
"""Reasons kept per import (the count of failed messages is always exact)."""
UPLOAD_CONTENT_TYPE = "application/octet-stream"


class QueueUnavailable(MailError):
    """The job queue (the database) did not answer; nothing was queued."""


def psycopg_conninfo(url: str) -> str:
    """The libpq connection string for a SQLAlchemy URL, as psycopg 3 (procrastinate's
    connector) takes it: ``postgresql+psycopg2://postgres@/postgres?host=/run/pg&port=5433``
    becomes ``user=postgres dbname=postgres host=/run/pg port=5433 connect_timeout=10``."""
    from psycopg.conninfo import make_conninfo

    parsed = make_url(url)
    params: dict[str, Any] = {}
    for key, value in parsed.query.items():
        params[key] = value[-1] if isinstance(value, tuple) else value
    for key, value in (("host", parsed.host), ("port", parsed.port), ("user", parsed.username),
                       ("password", parsed.password), ("dbname", parsed.database)):
        if value not in (None, ""):
            params.setdefault(key, str(value))
    params.setdefault("connect_timeout", "10")
    return make_conninfo(**params)


def job_app(conninfo: str, *, worker: bool = False, max_connections: int = 4):
    """A procrastinate App on the app's database. The app's side (``worker=False``) only
    enqueues and cancels, on a small synchronous pool; a worker's App runs jobs asynchronously
    and knows the import task (see `mail.jobs_worker.worker_app`)."""
    import procrastinate

    options = {"conninfo": conninfo, "min_size": 1, "max_size": max_connections}
    connector = procrastinate.PsycopgConnector(**options) if worker else procrastinate.SyncPsycopgConnector(**options)
    return procrastinate.App(connector=connector)


class JobSecrets:
    """Fernet encryption of what a job needs but no table or file may hold in plain text (an
    IMAP password). The key is JOB_SECRET_KEY, shared by the app and every worker; without it,
    a key file made once (mode 0600) in the data folder, which serves one machine."""

    def __init__(self, key: str | bytes) -> None:
        from cryptography.fernet import Fernet

        try:
            self._fernet = Fernet(key.encode() if isinstance(key, str) else key)
        except (ValueError, TypeError):
            raise ValueError("JOB_SECRET_KEY is not a Fernet key (32 bytes in URL-safe base64); make one with "
                             "python -c 'from cryptography.fernet import Fernet; "
                             "print(Fernet.generate_key().decode())'.") from None

    @classmethod
    def from_key_file(cls, path: Path) -> JobSecrets:
        """The key in ``path``, made there first if there is none (readable by this user only).
        Several processes starting at once end up with the same key."""
        from cryptography.fernet import Fernet

        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            draft = path.with_name(f".{path.name}.{os.getpid()}")
            descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(descriptor, Fernet.generate_key())
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            try:
                os.link(draft, path)  # fails when another process got there first: keep theirs
            except FileExistsError:
                pass
            finally:
                os.unlink(draft)
        return cls(path.read_bytes().strip())

    def encrypt(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode("utf-8"))

    def decrypt(self, token: bytes) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(bytes(token)).decode("utf-8")
        except InvalidToken:
            raise ImportRefused(
                "The IMAP password could not be read back on the worker: the app and the workers "
                "must share one JOB_SECRET_KEY. Set it for both and import again.") from None


@dataclass(frozen=True)
class ImportJob:
    """One import as its row says: what, whose, how far, and how it ended."""

    id: int
    owner: str
    kind: str
    """upload, path, imap or demo."""
    label: str
    status: str
    """queued, running, done, failed or cancelled."""
    done: int
    total: int | None
    rate: float | None
    """Messages a second in the current run."""
    eta_seconds: float | None
    imported: int
    duplicates: int
    failed: int
    failures: list[tuple[str, str]]
    embedded: bool
    error: str | None
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None
    job_id: int | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def seconds(self) -> float:
        end = self.finished_at or self.updated_at
        return max(0.0, (end - (self.started_at or self.created_at)).total_seconds())

    @property
    def summary(self) -> ImportSummary:
        return ImportSummary(imported=self.imported, duplicates=self.duplicates, failed=self.failed,
                             failures=list(self.failures), seconds=self.seconds, embedded=self.embedded,
                             cancelled=self.status == "cancelled")


def _job(row) -> ImportJob:
    values = dict(row._mapping)
    values["failures"] = [(str(where), str(reason)) for where, reason in (values["failures"] or [])]
    return ImportJob(**values)


def load_job(engine: Engine, import_id: int, owner: str | None = None) -> ImportJob | None:
    """One import by id (only ``owner``'s when given); `StorageError` when the database fails."""
    with sql.storage_errors("reading your imports"):
        return _load(engine, import_id, owner)


def _load(engine: Engine, import_id: int, owner: str | None) -> ImportJob | None:
    with engine.connect() as conn:
        row = sql.import_row(conn, import_id, owner)
    return _job(row) if row else None


def remove_uploads(engine: Engine, uploads, import_id: int, files: Sequence[dict]) -> None:
    """Delete an ended import's saved files, unless an unfinished import has the same bytes."""
    for entry in files:
        key = entry.get("key")
        if not key:
            continue
        with engine.connect() as conn:
            shared = sql.upload_shared(conn, import_id, key)
        if not shared:
            try:
                uploads.delete(key)
            except Exception:  # already gone, or the store is down: nothing to keep it for
                pass


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class ImportQueue:
    """The app's side of the imports: enqueue, list, cancel. Every call is scoped to an owner."""

    def __init__(self, engine: Engine, app, *, uploads, secrets: JobSecrets,
                 max_upload_mb: float | None = None, max_message_mb: float | None = None,
                 imap_allow_private_hosts: bool = False) -> None:
        self.engine = engine
        self.imap_allow_private_hosts = imap_allow_private_hosts
        self.app = app
        self.uploads = uploads
        self.secrets = secrets
        self.max_upload_bytes = int(max_upload_mb * 2**20) if max_upload_mb else None
        self.max_message_bytes = int(max_message_mb * 2**20) if max_message_mb else None
        self._opened = False

    # -- enqueue ---------------------------------------------------------------------------

    def enqueue_uploads(self, owner: str, files: Sequence[tuple[str, bytes]]) -> ImportJob:
        """Check the files as a whole (mail at all, size, a safe zip), save them and queue
        their import. A refused file queues nothing."""
        if not files:
            raise ImportRefused("Choose at least one file to import.")
        for name, data in files:
            with open_upload(name, data, max_upload_bytes=self.max_upload_bytes,
                             max_message_bytes=self.max_message_bytes):
                pass
        label = PurePath(files[0][0]).name if len(files) == 1 else f"{len(files)} files"
        saved = []
        for name, data in files:
            try:
                key = self.uploads.put(data, UPLOAD_CONTENT_TYPE)
            except Exception as error:
                for entry in saved:
                    remove_uploads(self.engine, self.uploads, 0, [entry])
                raise ImportRefused(f"The upload could not be saved for the import ({_first_line(error)}); "
                                    "try again in a moment.") from None
            saved.append({"name": PurePath(name.replace("\\", "/")).name or "upload", "key": key,
                          "size": len(data)})
        return self._enqueue(owner, "upload", label, {"files": saved})

    def enqueue_path(self, owner: str, path: str) -> ImportJob:
        """Queue the import of a path on the server (as the workers' machines see it)."""
        target = (path or "").strip()
        if not target:
            raise ImportRefused("Give the path of an mbox file, a Maildir, a folder of .eml files or a .zip.")
        if _URL.match(target):
            raise ImportRefused(f"{target.split('://')[0]}:// is an address, not a path on the server; "
                                "import an IMAP account with its host, user name and password.")
        return self._enqueue(owner, "path", PurePath(target).name or "the path", {"path": target})

    def enqueue_imap(self, owner: str, *, host: str, user: str, password: str, port: int | None = None,
                     security: Security = "ssl", folders: str | Sequence[str] | None = "INBOX") -> ImportJob:
        """Queue an IMAP import; the password is kept encrypted in the import's row until it ends.
        A host an import may not reach is refused here already (the worker checks again when it
        connects: the name may resolve differently by then)."""
        host, user, port = check_imap(host=host, user=user, password=password, port=port, security=security)
        resolve_imap_host(host, port, allow_private_hosts=self.imap_allow_private_hosts)
        params = {"host": host, "port": port, "security": security, "user": user,
                  "folders": parse_folders(folders)}
        return self._enqueue(owner, "imap", f"{user}@{host}", params, secret=self.secrets.encrypt(password))

    def enqueue_demo(self, owner: str) -> ImportJob:
        return self._enqueue(owner, "demo", "the demo mailbox", {})

    def _enqueue(self, owner: str, kind: str, label: str, params: dict, *, secret: bytes | None = None) -> ImportJob:
        if not owner or not owner.strip():
            raise ValueError("An import needs an owner.")
        try:
            with self.engine.begin() as conn:
                import_id = sql.insert_import(conn, owner, kind, label, params, secret)
        except SQLAlchemyError as error:
            remove_uploads(self.engine, self.uploads, 0, params.get("files", []))
            raise QueueUnavailable(f"The import could not be queued: the database is not answering "
                                   f"({_first_line(error)}). Try again in a moment.") from None
        try:
            job_id = self._jobs().configure_task(TASK_NAME, queue=QUEUE, lock=_lock(owner)).defer(import_id=import_id)
        except Exception as error:
            try:
                self._end(import_id, "failed", "The import could not be queued: the job queue is not answering "
                                               f"({_first_line(error)}). Try again in a moment.")
                remove_uploads(self.engine, self.uploads, import_id, params.get("files", []))
            except SQLAlchemyError:
                pass  # the database went away meanwhile; the row stays queued with no job to run it
            raise QueueUnavailable("The import could not be queued: the job queue is not answering. "
                                   "Try again in a moment.") from None
        try:
            with self.engine.begin() as conn:
                sql.set_import_job(conn, import_id, job_id)
            job = _load(self.engine, import_id, owner)
        except SQLAlchemyError:
            raise QueueUnavailable("The import was queued, but the database stopped answering; it will "
                                   "show here when the database is back.") from None
        assert job is not None
        return job

    def _jobs(self):
        if not self._opened:
            self.app.open()
            self._opened = True
        return self.app

    def close(self) -> None:
        if self._opened:
            self.app.close()
            self._opened = False

    # -- read ------------------------------------------------------------------------------

    # Each raises `StorageError` when the database fails.

    def imports(self, owner: str, *, limit: int = 20) -> list[ImportJob]:
        """``owner``'s imports, unfinished ones first, then newest first."""
        with sql.storage_errors("reading your imports"), self.engine.connect() as conn:
            rows = sql.import_rows(conn, owner, limit)
        return [_job(row) for row in rows]

    def get(self, owner: str, import_id: int) -> ImportJob | None:
        return load_job(self.engine, import_id, owner)

    def active(self, owner: str) -> list[ImportJob]:
        """``owner``'s queued and running imports, oldest first (the order they run in)."""
        with sql.storage_errors("reading your imports"), self.engine.connect() as conn:
            rows = sql.active_import_rows(conn, owner)
        return [_job(row) for row in rows]

    def workers_alive(self, *, within_seconds: float = 60.0) -> int:
        """Workers whose heartbeat is recent: none means queued imports wait for one to start."""
        with sql.storage_errors("looking for import workers"), self.engine.connect() as conn:
            return sql.workers_alive(conn, within_seconds)

    # -- cancel ----------------------------------------------------------------------------

    def cancel(self, owner: str, import_id: int) -> bool:
        """Ask ``owner``'s import to stop: a queued one ends now, a running one after its
        current batch (what it stored is kept). False when it is not theirs or already over."""
        with sql.storage_errors("cancelling the import"):
            return self._cancel(owner, import_id)

    def _cancel(self, owner: str, import_id: int) -> bool:
        with self.engine.begin() as conn:
            row = sql.request_cancel(conn, owner, import_id)
        if row is None:
            return False
        if row.status == "queued" and row.job_id is not None:
            try:
                taken_off = self._jobs().job_manager.cancel_job_by_id(row.job_id)
            except Exception:
                taken_off = False  # the worker sees the request when it picks the job up
            if taken_off and self._end(import_id, "cancelled", None, only_if="queued"):
                remove_uploads(self.engine, self.uploads, import_id, row.params.get("files", []))
        return True

    def _end(self, import_id: int, status: str, error: str | None, *, only_if: str | None = None) -> bool:
        with self.engine.begin() as conn:
            return sql.end_import(conn, import_id, status, error, only_if=only_if)


def _lock(owner: str) -> str:
    return f"mail-import:{owner}"


def _first_line(error: BaseException) -> str:
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:200]
