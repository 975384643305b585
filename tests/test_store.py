"""`semcache.store` is the cache's one SQL gateway: no other module of the library holds a
statement, vectors go through pgvector's own text form unchanged, and a database that does not
answer comes out of the cache and of its admin side as `StorageError`."""

from __future__ import annotations

import ast
import re
import socket
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from semcache import CacheAdmin, SemanticCache, SemcacheError, StorageError, store
from semcache.blobstores import LocalBlobStore
from semcache.budget import CostGuard

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "semcache"
SQL_HOMES = {"store.py", "schema.py"}
"""The gateway, and the declared tables (with their migrations, under ``migrations/``)."""
SQL = re.compile(r"\b(SELECT\s|INSERT\s+INTO|DELETE\s+FROM|UPDATE\s+\w+\s+SET|CREATE\s+(UNIQUE\s+)?INDEX|"
                 r"DROP\s+(INDEX|TABLE)|TRUNCATE\s|VACUUM\s|ALTER\s+(TABLE|DATABASE)|EXPLAIN\s)")


def is_sqlalchemy_text(func: ast.expr) -> bool:
    """``text`` or ``sqlalchemy.text`` (not, say, a drawing's ``ImageDraw.text``)."""
    if isinstance(func, ast.Name):
        return func.id == "text"
    return (isinstance(func, ast.Attribute) and func.attr == "text" and isinstance(func.value, ast.Name)
            and func.value.id in ("sqlalchemy", "sa"))


def sql_in(tree: ast.AST) -> list[str]:
    """Calls of ``text(...)`` and string constants that read as SQL, in one module, in order."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and is_sqlalchemy_text(node.func):
            found.append((node.lineno, node.col_offset, "text(...)"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            found.append((node.lineno, node.col_offset, SQL.search(node.value).group(0).strip()))
    return [f"line {line}: {what}" for line, _, what in sorted(found)]


def test_the_scan_finds_statements_in_every_form():
    source = ('from sqlalchemy import text\nq = text("SELECT 1")\nsql = "DELETE FROM semcache_entries"\n'
              'f = f"INSERT INTO semcache_events VALUES ({x})"\nconn.exec_driver_sql("UPDATE t SET a = 1")\n'
              'doc = "Select the nearest phrase; delete from the cache."\nImageDraw.Draw(c).text((4, 4), "x")\n'
              'sa.text(query)\n')
    assert sql_in(ast.parse(source)) == ["line 2: text(...)", "line 2: SELECT", "line 3: DELETE FROM",
                                         "line 4: INSERT INTO", "line 5: UPDATE t SET", "line 8: text(...)"]


def test_no_module_of_the_library_but_the_store_holds_sql():
    files = [path for path in sorted(LIBRARY.rglob("*.py"))
             if path.name not in SQL_HOMES and "migrations" not in path.relative_to(LIBRARY).parts]
    assert len(files) > 10
    found = {str(path.relative_to(ROOT)): v for path in files
             if (v := sql_in(ast.parse(path.read_text(), filename=str(path))))}
    assert found == {}


# ---------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_vectors_round_trip_through_pgvectors_text_form_exactly(db, seed):
    rng = np.random.default_rng(seed)
    vector = rng.normal(size=384).astype(np.float32)
    vector[:4] = [np.float32(1) / 3, np.finfo(np.float32).tiny, -np.finfo(np.float32).max, 1e-45]
    with store.begin(db) as conn:
        space = store.register_space(conn, "round-trip", 384, hnsw_m=16, hnsw_ef_construction=64)
        store.store_embedding(conn, space, "phrase", vector)
    with store.connect(db) as conn:
        back = np.asarray(store.embedding(conn, space, "phrase"), dtype=np.float32)
    assert back.tobytes() == vector.tobytes()


# ---------------------------------------------------------------------------- outages


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens on it once the socket is closed


@pytest.fixture
def nowhere():
    """An engine whose server is not there: what a cache meets when its database is down."""
    engine = create_engine(f"postgresql+psycopg2://nobody@127.0.0.1:{closed_port()}/none",
                           connect_args={"connect_timeout": 2})
    yield engine
    engine.dispose()


def assert_outage(error: pytest.ExceptionInfo) -> None:
    exc = error.value
    assert isinstance(exc, SemcacheError) and exc.unavailable and not exc.connection_lost
    assert isinstance(exc.__cause__, OperationalError)
    assert "not answering" in str(exc) and "127.0.0.1" not in str(exc) and "SELECT" not in str(exc)


def test_a_database_that_does_not_answer_is_a_storage_error_from_get_and_admin(nowhere, local_embedder,
                                                                                emoji_generator, tmp_path):
    cache = SemanticCache(nowhere, local_embedder, emoji_generator, LocalBlobStore(tmp_path),
                          guard=CostGuard(nowhere, images_per_user=5))
    with pytest.raises(StorageError) as error:
        cache.get("dog")
    assert_outage(error)
    admin = CacheAdmin(cache)
    for call in (admin.entries, lambda: admin.mark_wrong("puppy", "dog"), admin.evict, admin.stats,
                 lambda: cache.threshold, cache.guard.usage):
        with pytest.raises(StorageError) as error:
            call()
        assert_outage(error)


def test_a_connection_killed_by_the_server_fails_an_admin_call_and_a_lookup_retries(db, pg_url, local_embedder,
                                                                                     emoji_generator, tmp_path):
    engine = create_engine(pg_url, pool_size=1)  # no pre-ping: a dead pooled connection is met mid-call

    def kill_the_pooled_connection() -> None:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        with db.connect() as other:
            assert other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()

    try:
        cache = SemanticCache(engine, local_embedder, emoji_generator, LocalBlobStore(tmp_path))
        assert cache.get("dog").kind == "generated"
        kill_the_pooled_connection()
        with pytest.raises(StorageError) as error:
            CacheAdmin(cache).entries()
        assert error.value.connection_lost and isinstance(error.value.__cause__, OperationalError)
        assert [e.key for e in CacheAdmin(cache).entries()] == ["dog"], "the next call connects again"
        kill_the_pooled_connection()
        assert cache.get("dog").kind == "exact", "a lookup is retried once on a new connection"
    finally:
        engine.dispose()


def test_the_embedded_servers_start_failure_is_a_storage_error_too():
    from db.engine import EmbeddedDatabaseError

    with pytest.raises(StorageError) as error, store.translated():
        raise EmbeddedDatabaseError("The embedded database in /var/tmp/x did not start (no space left).")
    assert error.value.unavailable and "/var/tmp" not in str(error.value)


def test_a_refused_statement_is_a_storage_error_that_says_what_to_check(db):
    with pytest.raises(StorageError) as error, store.connect(db) as conn:
        conn.execute(text("SELECT * FROM semcache_no_such_table"))
    assert not error.value.unavailable and "semcache.schema.upgrade" in str(error.value)
    assert "semcache_no_such_table" not in str(error.value)
