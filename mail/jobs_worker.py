"""The workers' side of the imports (see `mail.jobs`): the import task, and the loop that runs
it (`python -m mail worker`).

A job carries nothing but its import's id. The task claims the import's row (a new attempt),
runs the import in batches, and after every batch records, in the batch's own transaction,
how far it got; so a worker that dies leaves the row exactly where its stored messages end.
Such a job is found again from procrastinate's worker heartbeats (on every worker's start and
every few seconds after) and retried; the retry goes on from the row's count, and Message-ID
keys keep anything from being stored twice. An import asked to stop ends after its batch.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from mail import importing, sql
from mail.jobs import MAX_STORED_FAILURES, QUEUE, TASK_NAME, JobSecrets, job_app, remove_uploads
from mail.sources import error_detail
from mail.store import BatchReport
from mail.types import ImportRefused, MailError

__all__ = ["ImportRunner", "serve", "worker_app"]

log = logging.getLogger("mail.worker")

OUTAGE_RETRIES = 6
"""An import stopped by a database or model outage is tried again this many times (waiting
5 s, 10 s, 20 s, ... up to 5 minutes) before it is marked failed."""


class _Superseded(Exception):
    """Another attempt of the same import has taken it over (this one was thought dead)."""


class _Interrupted(Exception):
    """The import stopped for an outage; it is to be tried again (a few times, with waits)."""


class _ShuttingDown(_Interrupted):
    """The worker is stopping; the import goes back to the queue at once."""


@dataclass
class ImportRunner:
    """What a worker imports with: the app's engine and embedder, where uploads are kept, the
    key of the IMAP passwords, and the import limits."""

    engine: Engine
    embedder: Any
    uploads: Any
    secrets: JobSecrets
    data_dir: Path
    max_message_mb: float | None = None
    max_upload_mb: float | None = None
    imap_timeout: float = 30.0
    imap_ssl_context: Any = None
    imap_allow_private_hosts: bool = False
    """IMAP servers on this machine or a private network may be imported from (checked at connect)."""
    admins: frozenset[str] = frozenset()
    """Owners (casefolded) who may read what a server answered when their import failed; others
    read a sentence that repeats nothing the server sent (the whole story is logged)."""

    def run(self, import_id: int, *, attempts: int = 0, should_abort=lambda: False) -> str:
        """Run one import to its end; returns its final status. Raises `_Interrupted` when it
        should be tried again (a shutdown, or an outage while retries remain)."""
        try:
            return self._run(import_id, attempts, should_abort)
        except (OperationalError, InterfaceError) as error:
            raise _Interrupted(f"the database went away ({type(error).__name__})") from None

    def _run(self, import_id: int, attempts: int, should_abort) -> str:
        claimed = self._claim(import_id)
        if claimed is None:
            return "gone"
        row, attempt = claimed
        if row.cancel_requested:
            self._finish(import_id, attempt, "cancelled", None, row.params)
            return "cancelled"
        progress = _Progress(self, import_id, attempt, row, should_abort)
        try:
            summary = self._import(row, progress)
        except _Superseded:
            return "superseded"
        except importing.ImportStopped as error:
            if attempts + 1 < OUTAGE_RETRIES:
                self._note(import_id, attempt, str(error), status="queued")
                raise _Interrupted(str(error)) from None
            self._finish(import_id, attempt, "failed", str(error), row.params)
            return "failed"
        except MailError as error:
            detail = error_detail(error)
            if detail != str(error):
                log.warning("Import %s failed: %s", import_id, detail)
            shown = detail if row.owner.casefold() in self.admins else str(error)
            self._finish(import_id, attempt, "failed", shown, row.params)
            return "failed"
        except (OperationalError, InterfaceError):
            raise
        except Exception as error:
            self._finish(import_id, attempt, "failed",
                         f"The import stopped on an unexpected error ({type(error).__name__}); what was "
                         "stored before it is kept, and importing again adds only the rest.", row.params)
            raise
        if summary.cancelled and progress.stopping_for_shutdown:
            self._note(import_id, attempt, None, status="queued")
            raise _ShuttingDown("the worker is stopping")
        status = "cancelled" if summary.cancelled else "done"
        self._finish(import_id, attempt, status, None, row.params, embedded=summary.embedded)
        return status

    # -- the row ---------------------------------------------------------------------------

    def _claim(self, import_id: int):
        with self.engine.begin() as conn:
            row = sql.claim_import(conn, import_id)
        return (row, row.attempt) if row is not None else None

    def _note(self, import_id: int, attempt: int, error: str | None, *, status: str) -> None:
        try:
            with self.engine.begin() as conn:
                sql.note_import(conn, import_id, attempt, status, error and f"Interrupted, to be resumed: {error}")
        except (OperationalError, InterfaceError):
            pass  # the database is down: the row keeps its last batch, the retry goes on from there

    def _finish(self, import_id: int, attempt: int, status: str, error: str | None, params: dict,
                *, embedded: bool | None = None) -> None:
        with self.engine.begin() as conn:
            sql.finish_import(conn, import_id, attempt, status, error, embedded)
        remove_uploads(self.engine, self.uploads, import_id, params.get("files", []))

    # -- the import ------------------------------------------------------------------------

    def _import(self, row, progress: _Progress):
        params, owner = row.params, row.owner
        options: dict[str, Any] = {"embedder": self.embedder, "on_batch": progress.record}
        if row.kind == "imap":
            # The account's saved UID state says where to go on; the row's counts carry over.
            progress.offset = row.done
            password = self.secrets.decrypt(row.secret) if row.secret is not None else None
            if not password:
                raise ImportRefused("The IMAP password is no longer kept for this import; import the account again.")
            return importing.import_imap(
                self.engine, owner, host=params["host"], port=params["port"], security=params["security"],
                user=params["user"], password=password, folders=params["folders"],
                max_message_mb=self.max_message_mb, ssl_context=self.imap_ssl_context,
                timeout=self.imap_timeout, allow_private_hosts=self.imap_allow_private_hosts, **options)
        options["skip"] = row.done  # files are read again from the start; the first `done` were stored
        if row.kind == "upload":
            files = [(entry["name"], self._saved(entry)) for entry in params["files"]]
            return importing.import_uploads(self.engine, owner, files, max_message_mb=self.max_message_mb,
                                            max_upload_mb=self.max_upload_mb, **options)
        if row.kind == "path":
            return importing.import_path(self.engine, owner, params["path"], max_message_mb=self.max_message_mb,
                                         **options)
        if row.kind == "demo":
            return importing.load_demo(self.engine, owner, self.data_dir, **options)
        raise ImportRefused(f"This worker does not know imports of kind {row.kind!r}; update it.")

    def _saved(self, entry: dict) -> bytes:
        from semcache.errors import BlobNotFound, BlobStoreError

        try:
            return self.uploads.get(entry["key"])
        except BlobNotFound:
            log.warning("The upload %s (%s) is not in %r.", entry["key"], entry["name"], self.uploads)
            raise ImportRefused(
                f"The uploaded file {entry['name']} is not where this worker looks. Workers on other "
                "machines need S3_BUCKET (uploads are kept there); upload it again.") from None
        except BlobStoreError as error:
            raise importing.ImportStopped(f"The uploaded file {entry['name']} could not be read ({error}).") from None


class _Progress:
    """Records each batch in the import's row, inside the batch's transaction, and says whether
    to go on (not when the owner cancelled, nor when the worker is stopping)."""

    def __init__(self, runner: ImportRunner, import_id: int, attempt: int, row, should_abort) -> None:
        self.runner, self.import_id, self.attempt = runner, import_id, attempt
        self.base = (row.imported, row.duplicates, row.failed)
        self.room = max(0, MAX_STORED_FAILURES - row.stored_failures)
        self.offset = 0
        self.should_abort = should_abort
        self.stopping_for_shutdown = False

    def record(self, conn: Connection, report: BatchReport) -> bool:
        p = report.progress
        kept = report.new_failures[:self.room]
        self.room -= len(kept)
        row = sql.record_batch(
            conn, self.import_id, self.attempt, done=self.offset + p.done,
            total=None if p.total is None else self.offset + p.total, rate=p.rate, eta=p.eta_seconds,
            imported=self.base[0] + report.imported, duplicates=self.base[1] + report.duplicates,
            failed=self.base[2] + report.failed, failures=kept)
        if row is None:
            raise _Superseded()
        if self.should_abort():
            self.stopping_for_shutdown = True
            return False
        return not row.cancel_requested


# -- procrastinate ---------------------------------------------------------------------------

def _retry_strategy():
    from procrastinate import RetryStrategy
    from procrastinate.exceptions import JobAborted

    class ImportRetry(RetryStrategy):
        def get_retry_decision(self, *, exception, job):
            from procrastinate.retry import RetryDecision

            if isinstance(exception, (JobAborted, _ShuttingDown)):
                return RetryDecision(retry_in={"seconds": 0})
            if isinstance(exception, _Interrupted) and job.attempts < OUTAGE_RETRIES:
                return RetryDecision(retry_in={"seconds": min(300, 5 * 2 ** job.attempts)})
            return None

    return ImportRetry()


def worker_app(conninfo: str):
    """A procrastinate App that runs imports; the job context's ``runner`` does the work."""
    app = job_app(conninfo, worker=True)

    @app.task(name=TASK_NAME, queue=QUEUE, pass_context=True, retry=_retry_strategy())
    def run_import(context, import_id: int) -> str:
        runner: ImportRunner = context.additional_context["runner"]
        status = runner.run(import_id, attempts=context.job.attempts, should_abort=context.should_abort)
        log.info("Import %s: %s", import_id, status)
        return status

    return app


async def recover_stalled(app, *, stalled_after: float) -> int:
    """Put back in the queue the import jobs of workers whose heartbeat stopped; how many."""
    from procrastinate.exceptions import ConnectorException

    count = 0
    for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after, task_name=TASK_NAME):
        try:
            await app.job_manager.retry_job(job)
        except ConnectorException:
            continue  # another worker retried it first
        log.warning("Import job %s was left by a stopped worker; it is queued again.", job.id)
        count += 1
    return count


async def _keep_recovering(app, stalled_after: float) -> None:
    while True:
        try:
            await recover_stalled(app, stalled_after=stalled_after)
        except Exception as error:  # the database is away: the worker's loop reconnects
            log.debug("Looking for stalled imports failed: %s", error)
        await asyncio.sleep(max(1.0, min(30.0, stalled_after / 2)))


async def serve(app, runner: ImportRunner, *, heartbeat_seconds: float = 10.0, stalled_after: float = 30.0,
                once: bool = False, name: str | None = None, stop: asyncio.Event | None = None) -> None:
    """Run import jobs until SIGINT or SIGTERM (or, with ``once``, until the queue is empty).
    When the database goes away the worker closes its connections, waits, and starts over."""
    from procrastinate.worker import Worker

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    current: list[Worker] = []

    def stop_now() -> None:
        stop.set()
        for worker in current:
            worker.stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop_now)
        except (RuntimeError, ValueError, NotImplementedError):
            pass  # not the main thread (tests): ``stop`` ends it
    backoff = 1.0
    try:
        while not stop.is_set():
            recovery = None
            try:
                async with app.open_async():
                    await recover_stalled(app, stalled_after=stalled_after)
                    recovery = asyncio.create_task(_keep_recovering(app, stalled_after))
                    worker = Worker(app, queues=[QUEUE], name=name, wait=not once, install_signal_handlers=False,
                                    additional_context={"runner": runner}, update_heartbeat_interval=heartbeat_seconds,
                                    stalled_worker_timeout=stalled_after, shutdown_graceful_timeout=0,
                                    delete_jobs="successful")
                    current[:] = [worker]
                    watcher = asyncio.create_task(_stop_when(stop, worker))
                    backoff = 1.0
                    try:
                        await worker.run()
                    finally:
                        watcher.cancel()
                if once or stop.is_set():
                    return
                log.warning("The worker lost the database; starting over in %.0f s.", backoff)
            except Exception as error:
                if stop.is_set():
                    return
                log.warning("The database is not answering (%s); the worker tries again in %.0f s.",
                            _first_line(error), backoff)
            finally:
                current.clear()
                if recovery is not None:
                    recovery.cancel()
            try:
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(backoff * 2, 30.0)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(signum)
            except (RuntimeError, ValueError, NotImplementedError):
                pass


async def _stop_when(stop: asyncio.Event, worker) -> None:
    await stop.wait()
    worker.stop()


def _first_line(error: BaseException) -> str:
    cause = error.__cause__ or error
    lines = str(cause).strip().splitlines()
    return (lines[0] if lines else type(cause).__name__)[:200]
