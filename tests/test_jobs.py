"""Background imports (`mail.jobs`, `mail.jobs_worker`): queued in PostgreSQL with procrastinate,
run by real workers (in this process, or `python -m mail worker` subprocesses), against the
test database, the real local model and the real IMAP server.

Covered: the URL handed to psycopg, the queue's schema applied once by the migrations, a queued
import run by a worker, one import per owner at a time, cancelling (queued and running), failure
reasons, owners kept apart, the IMAP password kept only as ciphertext and only until the end,
and a worker SIGKILLed mid-import whose import another worker finishes with every message once.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from helpers import eml
from mail.demo import write_demo_mbox

ROOT = Path(__file__).resolve().parent.parent
OWNER = "job-owner"


def count(engine, table: str, owner: str = OWNER) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table} WHERE owner = :owner"), {"owner": owner}).scalar_one()


def rows(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).all()


@pytest.fixture
def store(tmp_path):
    from semcache.blobstores import LocalBlobStore

    return LocalBlobStore(tmp_path / "uploads")


@pytest.fixture
def job_secrets():
    from cryptography.fernet import Fernet

    from mail.jobs import JobSecrets

    return JobSecrets(Fernet.generate_key())


@pytest.fixture
def queue(db, pg_url, store, job_secrets):
    from mail.jobs import ImportQueue, job_app, psycopg_conninfo

    queue = ImportQueue(db, job_app(psycopg_conninfo(pg_url)), uploads=store, secrets=job_secrets,
                        max_upload_mb=5, max_message_mb=5, imap_allow_private_hosts=True)  # Dovecot on loopback
    yield queue
    queue.close()


@pytest.fixture
def runner(db, local_embedder, store, job_secrets, tmp_path):
    from mail.jobs_worker import ImportRunner

    return ImportRunner(engine=db, embedder=local_embedder, uploads=store, secrets=job_secrets,
                        data_dir=tmp_path, max_message_mb=5, max_upload_mb=5, imap_allow_private_hosts=True)


@pytest.fixture
def run_jobs(pg_url, runner):
    """Run every queued import in this process, as a worker would, until the queue is empty."""
    from mail.jobs import psycopg_conninfo
    from mail.jobs_worker import serve, worker_app

    def run() -> None:
        asyncio.run(serve(worker_app(psycopg_conninfo(pg_url)), runner, once=True))

    return run


def test_conninfo_from_the_apps_urls():
    from psycopg.conninfo import conninfo_to_dict

    from mail.jobs import psycopg_conninfo

    embedded = conninfo_to_dict(psycopg_conninfo(
        "postgresql+psycopg2://postgres@/postgres?host=/var/tmp/sock dir&port=5433"))
    assert embedded == {"host": "/var/tmp/sock dir", "port": "5433", "user": "postgres", "dbname": "postgres",
                        "connect_timeout": "10"}
    production = conninfo_to_dict(psycopg_conninfo("postgresql://mail:p%40ss w0rd@db.internal:6543/mail?sslmode=require"))
    assert production == {"host": "db.internal", "port": "6543", "user": "mail", "password": "p@ss w0rd",
                          "dbname": "mail", "sslmode": "require", "connect_timeout": "10"}


def test_the_queue_schema_comes_with_the_migrations_once(engine):
    from db.engine import migrate

    migrate(engine)  # again: nothing to do, nothing fails
    (tables,) = rows(engine, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'procrastinate\\_%'")[0]
    assert tables == 4
    (version,) = rows(engine, "SELECT version_num FROM alembic_version")[0]
    assert version >= "0006"


def test_a_queued_import_is_run_by_a_worker(db, queue, run_jobs, tmp_path):
    mbox = tmp_path / "box.mbox"
    write_demo_mbox(mbox, count=30)
    job = queue.enqueue_path(OWNER, str(mbox))
    assert (job.status, job.label, job.kind) == ("queued", "box.mbox", "path")
    assert count(db, "mail_messages") == 0  # nothing happens in the app's process
    assert rows(db, "SELECT args, lock FROM procrastinate_jobs WHERE id = :id", id=job.job_id) == \
           [({"import_id": job.id}, f"mail-import:{OWNER}")]  # the job carries the import's id only

    run_jobs()
    done = queue.get(OWNER, job.id)
    assert (done.status, done.done, done.total, done.imported, done.duplicates, done.failed) == \
           ("done", 30, 30, 30, 0, 0)
    assert done.finished_at is not None and done.summary.imported == 30
    assert count(db, "mail_messages") == 30 and count(db, "mail_embeddings") == 30


def wait_for(predicate, *, timeout: float = 240.0, what: str = "the condition", proc=None):
    """Poll until ``predicate()`` is truthy (never a timing assert: the deadline only stops a hung test)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the worker exited ({proc.returncode}) before {what}:\n{proc.log()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}" + (f":\n{proc.log()}" if proc else ""))
        time.sleep(0.2)


class WorkerProcess:
    """`python -m mail worker` on the test database, with a short heartbeat so that a killed
    worker's import is taken over within seconds."""

    def __init__(self, pg_url: str, data_dir: Path, key: str, *, log: Path, extra: tuple[str, ...] = ()) -> None:
        env = {**os.environ, "DATABASE_URL": pg_url, "DATA_DIR": str(data_dir), "EMBEDDING_PROVIDER": "local",
               "LOCAL_EMBEDDING_BACKEND": "torch", "JOB_SECRET_KEY": key, "PYTHONUNBUFFERED": "1"}
        self.log_path = log
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mail", "worker", "--heartbeat", "1", "--stalled-after", "3", *extra],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid

    def poll(self):
        return self.proc.poll()

    @property
    def returncode(self):
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def workers(pg_url, tmp_path):
    """Start worker processes sharing one key and data folder; all are stopped at the end."""
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    started: list[WorkerProcess] = []

    def start(*extra: str) -> WorkerProcess:
        worker = WorkerProcess(pg_url, tmp_path / "worker-data", key, log=tmp_path / f"worker-{len(started)}.log",
                               extra=extra)
        started.append(worker)
        return worker

    start.key = key
    yield start
    for worker in started:
        worker.stop(signal.SIGKILL)


def live_workers(engine) -> int:
    return rows(engine, "SELECT count(*) FROM procrastinate_workers")[0][0]


def import_row(engine, import_id: int):
    return rows(engine, "SELECT * FROM mail_imports WHERE id = :id", id=import_id)[0]


def import_under_way(db, queue, workers, mbox, count: int):
    """A worker started on ``count`` demo messages in ``mbox``, once its first batch is stored:
    (the worker, the import)."""
    write_demo_mbox(mbox, count=count)
    first = workers()
    wait_for(lambda: live_workers(db) == 1, what="the first worker to register", proc=first)
    job = queue.enqueue_path(OWNER, str(mbox))
    wait_for(lambda: import_row(db, job.id).done >= 200, what="the first batch", proc=first)
    return first, job


def test_a_worker_killed_mid_import_is_taken_over_and_stores_every_message_once(db, queue, workers, tmp_path):
    mbox = tmp_path / "big.mbox"
    first, job = import_under_way(db, queue, workers, mbox, 1000)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    killed = import_row(db, job.id)
    assert killed.status == "running" and 200 <= killed.done < 1000, killed
    assert killed.done == count(db, "mail_messages")  # the row and the stored messages agree

    second = workers()
    wait_for(lambda: import_row(db, job.id).status in ("done", "failed"), what="the import to end", proc=second)
    row = import_row(db, job.id)
    assert (row.status, row.error, row.done, row.total) == ("done", None, 1000, 1000)
    assert (row.imported, row.duplicates, row.failed) == (1000, 0, 0)
    assert row.attempt == 2  # taken over, not started again from nothing
    assert count(db, "mail_messages") == 1000 and count(db, "mail_embeddings") == 1000
    (distinct,) = rows(db, "SELECT count(DISTINCT message_id) FROM mail_messages WHERE owner = :o", o=OWNER)[0]
    assert distinct == 1000
    assert "left by a stopped worker" in second.log()


def test_one_import_per_owner_at_a_time_while_other_owners_run_alongside(db, queue, workers, tmp_path):
    big, small, other = tmp_path / "big.mbox", tmp_path / "small.mbox", tmp_path / "other.mbox"
    write_demo_mbox(big, count=400)
    write_demo_mbox(small, count=10)
    write_demo_mbox(other, count=10)
    pair = [workers(), workers()]
    wait_for(lambda: live_workers(db) == 2, what="two workers to register", proc=pair[0])
    first = queue.enqueue_path(OWNER, str(big))
    second = queue.enqueue_path(OWNER, str(small))
    elsewhere = queue.enqueue_path("someone-else", str(other))
    assert [job.id for job in queue.active(OWNER)] == [first.id, second.id]
    wait_for(lambda: all(import_row(db, j.id).status == "done" for j in (first, second, elsewhere)),
             what="the three imports", proc=pair[1])
    a, b, c = (import_row(db, j.id) for j in (first, second, elsewhere))
    assert b.started_at >= a.finished_at  # the owner's second import waited for the first
    assert c.started_at < a.finished_at  # another owner's ran beside it, on the other worker
    assert count(db, "mail_messages") == 400 and count(db, "mail_messages", "someone-else") == 10


def test_a_worker_outlives_a_database_restart(workers, tmp_path, local_embedder):
    from pgserver import RestartablePostgres

    from db.engine import create_db_engine, migrate
    from mail.jobs import ImportQueue, job_app, psycopg_conninfo
    from semcache.blobstores import LocalBlobStore
    from mail.jobs import JobSecrets

    mbox = tmp_path / "after.mbox"
    write_demo_mbox(mbox, count=20)
    with RestartablePostgres() as pg:
        engine = create_db_engine(pg.url)
        migrate(engine)
        worker = WorkerProcess(pg.url, tmp_path / "restart-data", workers.key, log=tmp_path / "restart.log")
        try:
            wait_for(lambda: live_workers(engine) == 1, what="the worker to register", proc=worker)
            pg.stop()
            wait_for(lambda: "not answering" in worker.log() or "lost the database" in worker.log(),
                     what="the worker to notice", proc=worker)
            pg.start()
            queue = ImportQueue(engine, job_app(psycopg_conninfo(pg.url)), uploads=LocalBlobStore(tmp_path / "u"),
                                secrets=JobSecrets(workers.key))
            job = queue.enqueue_path(OWNER, str(mbox))
            wait_for(lambda: import_row(engine, job.id).status == "done", what="the import after the restart",
                     proc=worker)
            assert worker.poll() is None and count(engine, "mail_messages") == 20
            queue.close()
        finally:
            assert worker.stop(signal.SIGTERM) == 0, worker.log()  # and it stops cleanly when asked
            engine.dispose()


def test_cancel_a_queued_import_and_an_owner_cannot_touch_anothers(db, queue, run_jobs, store, tmp_path):

    mbox = tmp_path / "box.mbox"
    write_demo_mbox(mbox, count=10)
    first = queue.enqueue_path(OWNER, str(mbox))
    second = queue.enqueue_uploads(OWNER, [("one.eml", eml("Kept out"))])
    assert len(list((tmp_path / "uploads").rglob("*.bin"))) == 1

    assert queue.imports("someone-else") == [] and queue.get("someone-else", second.id) is None
    assert not queue.cancel("someone-else", second.id)
    assert queue.get(OWNER, second.id).status == "queued"

    assert queue.cancel(OWNER, second.id)
    cancelled = queue.get(OWNER, second.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert rows(db, "SELECT status FROM procrastinate_jobs WHERE id = :id", id=second.job_id)[0][0] == "cancelled"
    assert list((tmp_path / "uploads").rglob("*.bin")) == []  # its saved upload is gone

    run_jobs()
    assert queue.get(OWNER, first.id).status == "done" and queue.get(OWNER, second.id).status == "cancelled"
    assert count(db, "mail_messages") == 10
    assert not queue.cancel(OWNER, first.id)  # over already
    assert [job.id for job in queue.imports(OWNER)] == [second.id, first.id]


def test_cancel_a_running_import_stops_after_its_batch_and_keeps_what_was_stored(db, queue, runner, pg_url, tmp_path):
    import threading

    from mail.jobs import psycopg_conninfo
    from mail.jobs_worker import serve, worker_app

    mbox = tmp_path / "long.mbox"
    write_demo_mbox(mbox, count=1200)
    job = queue.enqueue_path(OWNER, str(mbox))
    worker = threading.Thread(target=lambda: asyncio.run(serve(worker_app(psycopg_conninfo(pg_url)), runner,
                                                               once=True)))
    worker.start()
    try:
        wait_for(lambda: queue.get(OWNER, job.id).done >= 200, what="the first batch")
        assert queue.cancel(OWNER, job.id)
    finally:
        worker.join(timeout=300)
    assert not worker.is_alive()
    ended = queue.get(OWNER, job.id)
    assert ended.status == "cancelled" and ended.summary.cancelled
    assert 200 <= ended.done < 1200 and ended.imported == ended.done == count(db, "mail_messages")


def test_failures_are_kept_with_their_reasons(db, queue, run_jobs, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("Shopping list\nmilk, eggs, bread\n")
    refused = queue.enqueue_path(OWNER, str(notes))
    missing = queue.enqueue_path(OWNER, str(tmp_path / "nowhere.mbox"))
    mbox = tmp_path / "mixed.mbox"
    write_demo_mbox(mbox, count=5)
    with mbox.open("ab") as out:  # one message over the 5 MiB message limit
        out.write(b"From huge@example.com Mon Jan  1 00:00:00 2024\nSubject: huge\nMessage-ID: <huge@x>\n\n"
                  + b"x" * (6 * 2**20) + b"\n")
    mixed = queue.enqueue_path(OWNER, str(mbox))
    run_jobs()

    refused, missing, mixed = (queue.get(OWNER, j.id) for j in (refused, missing, mixed))
    assert refused.status == "failed" and "is not an mbox file, a Maildir, .eml files or a .zip" in refused.error
    assert missing.status == "failed" and "does not exist; check the path" in missing.error
    assert (mixed.status, mixed.imported, mixed.failed) == ("done", 5, 1)
    assert len(mixed.failures) == 1 and "MiB" in mixed.failures[0][1]


def test_the_imap_password_is_only_ciphertext_and_only_until_the_import_ends(db, queue, run_jobs, imap_server,
                                                                           tmp_path, engine):

    folder = f"Jobs{secrets.token_hex(4)}"
    for subject in ("Flight to Lisbon", "Vet appointment"):
        imap_server.append(folder, eml(subject))
    password = imap_server.password
    job = queue.enqueue_imap(OWNER, host=imap_server.host, port=imap_server.port, security="plain",
                             user=imap_server.user, password=password, folders=folder)
    wrong = f"Wr0ng-{secrets.token_hex(8)}"
    refused = queue.enqueue_imap(OWNER, host=imap_server.host, port=imap_server.port, security="plain",
                                 user=imap_server.user, password=wrong, folders=folder)
    (secret,) = rows(db, "SELECT secret FROM mail_imports WHERE id = :id", id=job.id)[0]
    assert secret and password.encode() not in bytes(secret) and queue.secrets.decrypt(secret) == password
    with db.connect() as conn:
        jobs_table = str(conn.execute(text("SELECT * FROM procrastinate_jobs")).all())
        events = str(conn.execute(text("SELECT * FROM procrastinate_events")).all())
    assert password not in jobs_table + events and wrong not in jobs_table + events

    run_jobs()
    done, failed = queue.get(OWNER, job.id), queue.get(OWNER, refused.id)
    assert (done.status, done.imported) == ("done", 2)
    assert failed.status == "failed" and "refused the login" in failed.error and wrong not in failed.error
    assert rows(db, "SELECT count(*) FROM mail_imports WHERE secret IS NOT NULL")[0][0] == 0

    # Nowhere on disk in plain text: not in the data folder, not in PostgreSQL's files (WAL included).
    with engine.begin() as conn:
        conn.execute(text("CHECKPOINT"))
        data_directory = conn.execute(text("SHOW data_directory")).scalar_one()
    for root in (tmp_path, Path(data_directory)):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                content = path.read_bytes()
                assert password.encode() not in content and wrong.encode() not in content, path


def test_uploads_are_saved_for_the_worker_and_removed_when_the_import_ends(db, queue, run_jobs, tmp_path):

    from mail.types import ImportRefused

    with pytest.raises(ImportRefused, match="notes.txt"):
        queue.enqueue_uploads(OWNER, [("a.eml", eml("Kept out")), ("notes.txt", b"just words")])
    assert queue.imports(OWNER) == []
    job = queue.enqueue_uploads(OWNER, [("a.eml", eml("In")), ("b.eml", eml("Also in"))])
    assert job.label == "2 files" and len(list((tmp_path / "uploads").rglob("*.bin"))) == 2
    run_jobs()
    assert queue.get(OWNER, job.id).imported == 2
    assert list((tmp_path / "uploads").rglob("*.bin")) == []


def test_uploads_go_to_s3_when_a_bucket_is_set(db, pg_url, local_embedder, s3_server, tmp_path, monkeypatch,
                                             job_secrets):
    """Workers on other machines read the upload from the bucket; it is deleted at the end."""

    import services
    from mail.jobs import psycopg_conninfo
    from mail.jobs_worker import ImportRunner, serve, worker_app
    from settings import Settings

    bucket = s3_server.create_bucket("uploads")
    settings = Settings(database_url=pg_url, data_dir=tmp_path, s3_bucket=bucket, s3_endpoint_url=s3_server.endpoint_url,
                        s3_region="us-east-1", s3_access_key_id=s3_server.access_key,
                        s3_secret_access_key=s3_server.secret_key, job_secret_key=Fernet_key())
    queue = services.build_import_queue(settings, db)
    job = queue.enqueue_uploads(OWNER, [("a.eml", eml("From the bucket"))])
    client = s3_server.client()
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [item["Key"].split("/")[0] for item in listed] == ["uploads"]
    assert not (tmp_path / "uploads").exists()
    runner = ImportRunner(engine=db, embedder=local_embedder, uploads=services.build_upload_store(settings),
                          secrets=queue.secrets, data_dir=tmp_path / "elsewhere")
    asyncio.run(serve(worker_app(psycopg_conninfo(pg_url)), runner, once=True))
    assert queue.get(OWNER, job.id).imported == 1
    assert client.list_objects_v2(Bucket=bucket).get("Contents", []) == []
    queue.close()


def Fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def test_the_local_key_file_is_made_once_and_private(tmp_path):
    from mail.jobs import JobSecrets

    path = tmp_path / "data" / "job-secret.key"
    first = JobSecrets.from_key_file(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert JobSecrets.from_key_file(path).decrypt(first.encrypt("s3cret")) == "s3cret"
    with pytest.raises(ValueError, match="JOB_SECRET_KEY is not a Fernet key"):
        JobSecrets("not a key")


def test_a_stopped_worker_puts_its_import_back_in_the_queue_after_its_batch(db, queue, workers, tmp_path):
    mbox = tmp_path / "medium.mbox"
    first, job = import_under_way(db, queue, workers, mbox, 800)
    assert first.stop(signal.SIGTERM) == 0, first.log()
    stopped = import_row(db, job.id)
    assert stopped.status == "queued" and 200 <= stopped.done < 800
    assert rows(db, "SELECT status FROM procrastinate_jobs WHERE id = :id", id=job.job_id)[0][0] == "todo"

    second = workers()
    wait_for(lambda: import_row(db, job.id).status == "done", what="the import to end", proc=second)
    row = import_row(db, job.id)
    assert (row.imported, row.duplicates, row.done, row.attempt) == (800, 0, 800, 2)
    assert count(db, "mail_messages") == 800


def test_an_import_interrupted_by_a_database_restart_goes_on_after_it(workers, tmp_path):
    from pgserver import RestartablePostgres

    from db.engine import create_db_engine, migrate
    from mail.jobs import ImportQueue, JobSecrets, job_app, psycopg_conninfo
    from semcache.blobstores import LocalBlobStore

    mbox = tmp_path / "during.mbox"
    write_demo_mbox(mbox, count=800)
    with RestartablePostgres() as pg:
        engine = create_db_engine(pg.url)
        migrate(engine)
        worker = WorkerProcess(pg.url, tmp_path / "during-data", workers.key, log=tmp_path / "during.log")
        queue = ImportQueue(engine, job_app(psycopg_conninfo(pg.url)), uploads=LocalBlobStore(tmp_path / "u"),
                            secrets=JobSecrets(workers.key))
        try:
            wait_for(lambda: live_workers(engine) == 1, what="the worker to register", proc=worker)
            job = queue.enqueue_path(OWNER, str(mbox))
            wait_for(lambda: import_row(engine, job.id).done >= 200, what="the first batch", proc=worker)
            pg.stop()
            pg.start()
            wait_for(lambda: import_row(engine, job.id).status == "done", what="the import to end", proc=worker)
            row = import_row(engine, job.id)
            # Carried on (the pool reconnects between batches) or taken up again: either way once each.
            assert (row.imported, row.duplicates, row.done, row.error) == (800, 0, 800, None)
            assert count(engine, "mail_messages") == 800 and worker.poll() is None
        finally:
            queue.close()
            worker.stop(signal.SIGTERM)
            engine.dispose()
