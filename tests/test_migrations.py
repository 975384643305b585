"""The schema's two owners: the cache's tables from the library's own steps (`semcache.schema`),
the app's from its Alembic revisions, both run by `db.migrate`. Each test gets an empty
database of its own on the session's server.

`semcache_schema_v4.json` is the catalog of the cache's tables as the app's migrations 0001-0007
made them before the library owned its schema (columns with types, defaults and NOT NULL,
constraints, indexes, sequences): steps 1-4 must make exactly that, so a database made then is
one made by those steps without the record, which is how the adoption tests build one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from semcache.schema import MIGRATIONS, upgrade

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_V4 = Path(__file__).resolve().parent / "semcache_schema_v4.json"
NEWEST = [step.version for step in MIGRATIONS]


def cache_catalog(conn) -> dict:
    """The cache's tables as PostgreSQL's catalog has them (the run-time HNSW indexes and the
    migration record left out)."""
    tables = conn.execute(text(
        "SELECT c.oid, c.relname, c.relkind, c.relpersistence FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() "
        "AND c.relkind IN ('r', 'p') AND c.relname LIKE 'semcache\\_%' AND c.relname <> 'semcache_migrations' "
        "ORDER BY c.relname")).all()
    catalog = {}
    for oid, name, kind, persistence in tables:
        columns = conn.execute(text(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid), "
            "a.attidentity, a.attgenerated FROM pg_attribute a "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = :oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"), {"oid": oid})
        constraints = conn.execute(text(
            "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = :oid "
            "ORDER BY conname"), {"oid": oid})
        indexes = conn.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = :name "
            "AND indexname NOT LIKE 'semcache\\_embeddings\\_hnsw\\_%' ORDER BY indexname"), {"name": name})
        catalog[name] = {"kind": kind, "persistence": persistence, "columns": [list(r) for r in columns],
                         "constraints": [list(r) for r in constraints], "indexes": [list(r) for r in indexes]}
    catalog["sequences"] = [list(r) for r in conn.execute(text(
        "SELECT sequencename, data_type::text, start_value, increment_by FROM pg_sequences "
        "WHERE schemaname = current_schema() AND sequencename LIKE 'semcache\\_%' ORDER BY sequencename"))]
    return catalog


def catalog_of(engine) -> dict:
    with engine.connect() as conn:
        return cache_catalog(conn)


def record(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT version, name, adopted FROM semcache_migrations ORDER BY version"))]


def alembic_head(engine) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()


def alembic_upgrade(engine, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from db.engine import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def forget_the_record(engine) -> None:
    """What a database migrated before the library kept its record looks like."""
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE semcache_migrations"))


@pytest.fixture
def empty_url(pg_url):
    """A new, empty database on the session's server (pgvector installed, not created in it)."""
    name = f"migrations_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def empty_db(empty_url):
    engine = create_engine(empty_url)
    yield engine
    engine.dispose()


def test_the_steps_make_the_tables_the_apps_migrations_made(empty_db):
    assert upgrade(empty_db, to=4) == [1, 2, 3, 4]
    assert catalog_of(empty_db) == json.loads(SCHEMA_V4.read_text())


def test_a_fresh_database_gets_every_step_and_the_declared_tables(empty_db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from semcache.schema import metadata

    assert upgrade(empty_db) == NEWEST
    assert record(empty_db) == [(step.version, step.name, False) for step in MIGRATIONS]
    with empty_db.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        conn.execute(text("DROP INDEX semcache_entries_canon_idx"))  # the check sees what differs
        assert [d[0] for d in compare_metadata(MigrationContext.configure(conn), metadata)] == ["add_index"]


def test_upgrading_again_changes_nothing(empty_db):
    upgrade(empty_db)
    with empty_db.connect() as conn:
        before = conn.execute(text("SELECT version, applied_at FROM semcache_migrations ORDER BY version")).all()
    tables = catalog_of(empty_db)
    assert upgrade(empty_db) == []
    with empty_db.begin() as conn:
        assert upgrade(conn) == []  # on the caller's connection too
    with empty_db.connect() as conn:
        assert conn.execute(text("SELECT version, applied_at FROM semcache_migrations ORDER BY version")).all() == before
    assert catalog_of(empty_db) == tables


def test_a_database_the_app_migrated_before_is_adopted_with_its_data(empty_db, engine):
    from db.engine import migrate

    migrate(empty_db)
    forget_the_record(empty_db)
    with empty_db.begin() as conn:
        conn.execute(text("INSERT INTO semcache_entries (key, canon, phrase, blob_key, size_bytes, generator, cost_usd) "
                          "VALUES ('dog', 'dog', 'Dog', 'b/dog.png', 10, 'offline', 0.04)"))
        conn.execute(text("INSERT INTO semcache_settings (name, value) VALUES ('threshold', '0.3')"))
    migrate(empty_db)
    assert record(empty_db) == [(step.version, step.name, True) for step in MIGRATIONS]
    assert catalog_of(empty_db) == catalog_of(engine)  # the session's database: migrated fresh
    with empty_db.connect() as conn:
        assert conn.execute(text("SELECT key, phrase FROM semcache_entries")).all() == [("dog", "Dog")]
        assert conn.execute(text("SELECT value FROM semcache_settings")).scalar() == 0.3


@pytest.mark.parametrize("revision, reflected", [("0001", 1), ("0002", 1), ("0003", 2), ("0004", 3), ("0005", 4)])
def test_a_database_at_an_older_revision_ends_up_like_a_fresh_one(empty_db, engine, revision, reflected):
    from db.engine import migrate

    alembic_upgrade(empty_db, revision)
    assert record(empty_db) == [(step.version, step.name, False) for step in MIGRATIONS[:reflected]]
    forget_the_record(empty_db)
    with empty_db.begin() as conn:  # an entry made then, before dictionary forms when reflected is 1
        conn.execute(text("INSERT INTO semcache_entries (key, phrase, blob_key, size_bytes, generator, cost_usd) "
                          "VALUES ('dogs', 'Dogs', 'b/dogs.png', 10, 'offline', 0.04)"))
    migrate(empty_db)
    assert [r[2] for r in record(empty_db)] == [True] * reflected + [False] * (len(MIGRATIONS) - reflected)
    assert catalog_of(empty_db) == catalog_of(engine)
    assert alembic_head(empty_db) == alembic_head(engine)
    with empty_db.connect() as conn:
        expected_canon = "dogs" if reflected == 1 else None  # step 2 fills the column it adds
        assert conn.execute(text("SELECT key, canon FROM semcache_entries")).all() == [("dogs", expected_canon)]


def test_processes_starting_together_apply_each_step_once(empty_url, engine):
    """Two app processes (`db.migrate`: the app's lock, then the cache's) and two tools of the
    cache alone (`upgrade`: the cache's lock only), all at once on an empty database."""
    from db.engine import migrate

    engines = [create_engine(empty_url) for _ in range(4)]
    start = threading.Barrier(len(engines))
    failures: list[BaseException] = []
    ran: list[list[int]] = []

    def run(index: int) -> None:
        try:
            start.wait()
            if index % 2:
                migrate(engines[index])
            else:
                ran.append(upgrade(engines[index]))
        except BaseException as exc:  # noqa: BLE001  (reported below)
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(engines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert not any(t.is_alive() for t in threads)
        assert failures == []
        assert sorted(ran) in ([[], []], [[], NEWEST])
        assert record(engines[0]) == [(step.version, step.name, False) for step in MIGRATIONS]
        assert alembic_head(engines[0]) == alembic_head(engine)
    finally:
        for each in engines:
            each.dispose()


def test_a_cache_in_a_state_no_step_made_is_refused_untouched(empty_db):
    from semcache.errors import SemcacheError

    upgrade(empty_db)
    forget_the_record(empty_db)
    with empty_db.begin() as conn:
        conn.execute(text("ALTER TABLE semcache_entries DROP COLUMN canon"))  # step 2 undone, 3 and 4 there
    with pytest.raises(SemcacheError, match="step 3"):
        upgrade(empty_db)
    with empty_db.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('semcache_migrations')")).scalar() is None


def test_python_m_semcache_makes_its_tables_on_an_empty_database(empty_url, empty_db, tmp_path):
    """The library alone, copied with nothing of the app beside it, on a database with no tables."""
    shutil.copytree(ROOT / "semcache", tmp_path / "lib" / "semcache")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "lib")}
    done = subprocess.run([sys.executable, "-m", "semcache", "--database-url", empty_url, "--blob-dir",
                           str(tmp_path / "blobs"), "stats", "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["lookups"] == 0
    assert record(empty_db) == [(step.version, step.name, False) for step in MIGRATIONS]


# ---------------------------------------------------------------------- step 5: a threshold per space


def test_step_5_gives_every_existing_space_the_one_threshold_of_before(empty_db):
    upgrade(empty_db, to=4)
    with empty_db.begin() as conn:
        conn.execute(text("INSERT INTO semcache_spaces (model, dimensions) VALUES ('a', 3), ('b', 5)"))
        conn.execute(text("INSERT INTO semcache_settings (name, value, updated_by) VALUES ('threshold', '0.27', 'x')"))
        conn.execute(text("INSERT INTO semcache_settings (name, value) VALUES ('daily_budget_usd', '5')"))
    assert 5 in upgrade(empty_db)
    with empty_db.connect() as conn:
        rows = conn.execute(text("SELECT model, threshold, threshold_set_by FROM semcache_spaces ORDER BY model")).all()
        names = conn.execute(text("SELECT name FROM semcache_settings")).scalars().all()
    assert rows == [("a", 0.27, "x"), ("b", 0.27, "x")]
    assert names == ["daily_budget_usd"], "the moved row is gone, the other settings stay"


def test_step_5_keeps_the_threshold_for_the_first_space_when_there_was_none(empty_db, local_embedder,
                                                                            emoji_generator, tmp_path):
    upgrade(empty_db, to=4)
    with empty_db.begin() as conn:
        conn.execute(text("INSERT INTO semcache_settings (name, value) VALUES ('threshold', '0.22')"))
    upgrade(empty_db)
    from semcache import SemanticCache
    from semcache.blobstores import LocalBlobStore

    cache = SemanticCache(empty_db, local_embedder, emoji_generator, LocalBlobStore(tmp_path), default_threshold=0.35)
    assert cache.threshold == pytest.approx(0.22)  # not registered yet: read from the row kept for it
    cache.space()
    assert cache.threshold == pytest.approx(0.22)
    with empty_db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM semcache_settings")).scalar() == 0


def test_a_fresh_space_without_a_value_uses_the_default(empty_db, local_embedder, emoji_generator, tmp_path):
    upgrade(empty_db)
    from semcache import SemanticCache
    from semcache.blobstores import LocalBlobStore

    cache = SemanticCache(empty_db, local_embedder, emoji_generator, LocalBlobStore(tmp_path), default_threshold=0.31)
    assert cache.threshold == pytest.approx(0.31)
    assert cache.get("dog", fetch_image=False).threshold == pytest.approx(0.31)
