"""The semantic cache against real parts: embedded PostgreSQL + pgvector, the local embedding
model, the offline pixel-art generator, a local folder and a real S3 server for blobs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event, text

from db.engine import create_db_engine
from helpers import Counting
from semcache import (
    BlobStoreError, CacheAdmin, GenerationError, InvalidThreshold, InvalidTopic, SemanticCache,
)
from semcache.blobstores import LocalBlobStore, S3BlobStore
from semcache.interfaces import GeneratedImage

ROOT = Path(__file__).resolve().parent.parent


class FailingGenerator:
    name = "failing"
    price_usd = 0.04

    def generate(self, topic, embedding=None) -> GeneratedImage:
        raise GenerationError("The image service is down; try again in a minute.")


class FailingPuts(LocalBlobStore):
    def put(self, data: bytes, content_type: str = "image/png") -> str:
        raise BlobStoreError("The image store refused the write.")


@pytest.fixture
def blobs(tmp_path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def embedder(local_embedder) -> Counting:
    return Counting(local_embedder)


@pytest.fixture
def generator(emoji_generator) -> Counting:
    return Counting(emoji_generator)


@pytest.fixture
def cache(db, embedder, generator, blobs) -> SemanticCache:
    return SemanticCache(db, embedder, generator, blobs, default_threshold=0.35)


def count(engine, sql: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


# ---------------------------------------------------------------------------- the three paths

def test_miss_generates_then_exact_hit_needs_no_embedding(cache, embedder, generator):
    first = cache.get("Dog")
    assert first.kind == "generated" and first.served_key == "dog" and first.distance is None
    assert first.cost_spent_usd == pytest.approx(0.04) and first.cost_saved_usd == 0
    assert first.image.startswith(b"\x89PNG") and first.embedded
    assert first.timings.generate_ms > 0 and first.timings.embed_ms > 0
    assert generator.calls == ["Dog"]

    embedder.calls.clear()
    again = cache.get("  DOG\t")
    assert again.kind == "exact" and again.served_key == "dog" and again.distance == 0.0
    assert again.image == first.image and again.blob_key == first.blob_key
    assert again.cost_saved_usd == pytest.approx(0.04) and again.cost_spent_usd == 0
    assert embedder.calls == [] and not again.embedded and again.timings.embed_ms is None
    assert generator.calls == ["Dog"]


def test_semantic_hit_serves_the_close_phrase_and_caches_the_embedding(cache, embedder, generator):
    cache.get("dog")
    hit = cache.get("puppy")
    assert hit.kind == "semantic" and hit.served_key == "dog"
    assert 0 < hit.distance <= 0.35 and hit.cost_saved_usd == pytest.approx(0.04)
    assert embedder.calls.count("puppy") == 1

    second = cache.get("puppy")
    assert second.kind == "semantic" and not second.embedded
    assert embedder.calls.count("puppy") == 1, "a phrase embedded once is never sent again"
    assert generator.calls == ["dog"]


def test_unrelated_topic_generates(cache, generator):
    cache.get("dog")
    result = cache.get("invoice")
    assert result.kind == "generated" and result.served_key == "invoice"
    assert generator.calls == ["dog", "invoice"]


def test_every_lookup_is_an_event_and_stats_add_up(cache):
    for topic in ["dog", "dog", "puppy", "rocket"]:
        cache.get(topic)
    with cache.engine.connect() as conn:
        kinds = conn.execute(text("SELECT kind, served_key, cost_spent_usd, cost_saved_usd, total_ms "
                                  "FROM semcache_events ORDER BY id")).all()
    assert [k.kind for k in kinds] == ["generated", "exact", "semantic", "generated"]
    assert [k.served_key for k in kinds] == ["dog", "dog", "dog", "rocket"]
    assert all(k.total_ms > 0 for k in kinds)
    admin = CacheAdmin(cache)
    stats = admin.stats()
    assert (stats.entries, stats.lookups, stats.exact_hits, stats.semantic_hits, stats.generations) == (2, 4, 1, 1, 2)
    assert stats.spent_usd == pytest.approx(0.08) and stats.saved_usd == pytest.approx(0.08)
    assert stats.hit_rate == pytest.approx(0.5)
    assert {e.key: e.times_served for e in admin.entries()} == {"dog": 2, "rocket": 0}


# ---------------------------------------------------------------------------- the threshold

def test_threshold_zero_means_exact_only(cache, generator):
    cache.get("dog")
    assert cache.get("puppy", threshold=0).kind == "generated"
    assert cache.get("dog", threshold=0).kind == "exact"


def test_threshold_boundary_is_inclusive(cache):
    cache.get("dog")
    distance = cache.neighbours("puppy", k=1)[0].distance
    assert cache.get("puppy", threshold=distance).kind == "semantic"
    CacheAdmin(cache).delete("puppy")
    below = math.nextafter(distance, 0) - 1e-6
    assert cache.get("puppy", threshold=below).kind == "generated"


@pytest.mark.parametrize("bad", [-0.01, 2.0001, float("nan"), float("inf"), "0.3", True, None])
def test_invalid_thresholds_are_refused(cache, bad):
    with pytest.raises(InvalidThreshold, match="cosine distance"):
        cache.set_threshold(bad)
    if bad is not None:
        with pytest.raises(InvalidThreshold):
            cache.get("dog", threshold=bad)
    with pytest.raises(InvalidThreshold):
        SemanticCache(cache.engine, cache.embedder, cache.generator, cache.blobs, default_threshold=bad)


@pytest.mark.parametrize("edge", [0, 0.0, 2, 2.0, np.float32(0.5)])
def test_threshold_edges_are_accepted(cache, edge):
    assert cache.set_threshold(edge) == pytest.approx(float(edge))
    assert cache.threshold == pytest.approx(float(edge))


def test_stored_threshold_applies_to_every_cache_on_its_next_lookup(cache, embedder, generator, blobs):
    other_process = SemanticCache(cache.engine, embedder, generator, blobs, default_threshold=0.35)
    cache.get("dog")
    assert other_process.get("puppy").kind == "semantic"
    cache.set_threshold(0.0, actor="owner")
    assert other_process.threshold == 0.0
    assert other_process.get("doggy").kind == "generated"
    assert other_process.get("puppy", threshold=0.5).kind == "semantic", "a per-call threshold wins"
    with cache.engine.connect() as conn:
        assert conn.execute(text("SELECT threshold_set_by FROM semcache_spaces")).scalar_one() == "owner"


# ---------------------------------------------------------------------------- the index

def add_entries(conn, space_id: int, prefix: str, vectors: np.ndarray) -> None:
    """One entry per vector, keyed "<prefix> 1", "<prefix> 2", ..., in the space ``space_id``."""
    conn.execute(text("""
        WITH made AS (
            INSERT INTO semcache_entries (key, phrase, blob_key, size_bytes, generator, cost_usd)
            SELECT :prefix || ' ' || i, :prefix || ' ' || i, 'x.png', 1, 'test', 0
            FROM generate_series(1, :n) i
            RETURNING id, key)
        INSERT INTO semcache_embeddings (space_id, key, embedding, entry_id)
        SELECT :space, made.key, CAST(v.vec AS vector), made.id
        FROM made JOIN unnest(CAST(:vecs AS text[])) WITH ORDINALITY AS v(vec, n)
          ON made.key = :prefix || ' ' || v.n"""),
        {"space": space_id, "prefix": prefix, "n": len(vectors),
         "vecs": ["[" + ",".join(map(str, v)) + "]" for v in vectors]})


def test_semantic_search_uses_the_hnsw_index(cache):
    cache.get("dog")
    space = cache.space()
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(3000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with cache.engine.begin() as conn:
        add_entries(conn, space.id, "random", vectors)
        conn.execute(text("ANALYZE semcache_embeddings"))
    plan = cache.explain_search("puppy")
    assert f"Index Scan using {space.index_name}" in plan, plan
    assert cache.get("puppy").served_key == "dog"


def test_large_embeddings_are_indexed_as_halfvec(db, pg_url, generator, blobs):
    class Wide:
        model, dimensions = "wide-test-model", 3072

        def embed(self, texts):
            rng = np.random.default_rng(abs(hash(tuple(texts))) % 2**32)
            v = rng.normal(size=(len(texts), 3072)).astype(np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

    cache = SemanticCache(db, Wide(), generator, blobs)
    cache.get("rocket")
    with db.connect() as conn:
        definition = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
                                  {"n": cache.space().index_name}).scalar_one()
    assert "halfvec(3072)" in definition and "halfvec_cosine_ops" in definition

    # At this size the planner rightly scans the table; with scans ruled out it must still be able
    # to answer from the halfvec index, and answer what the scan answers.
    space = cache.space()
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(50, 3072)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with db.begin() as conn:
        add_entries(conn, space.id, "wide", vectors)
    no_scans = create_db_engine(pg_url)
    event.listen(no_scans, "connect", lambda dbapi, _: dbapi.cursor().execute("SET enable_seqscan = off"))
    try:
        indexed = SemanticCache(no_scans, Wide(), generator, blobs)
        assert f"Index Scan using {space.index_name}" in indexed.explain_search("rocket ship")
        assert ([(n.entry_id, round(n.distance, 3)) for n in indexed.neighbours("rocket ship", k=5)]
                == [(n.entry_id, round(n.distance, 3)) for n in cache.neighbours("rocket ship", k=5)])
    finally:
        no_scans.dispose()


# ---------------------------------------------------------------------------- concurrency

def test_sixteen_concurrent_misses_generate_once(cache, generator):
    generator.delay = 0.3
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: cache.get("Lighthouse"), range(16)))
    assert len(generator.calls) == 1
    assert sorted(r.kind for r in results).count("generated") == 1
    assert {r.blob_key for r in results} == {results[0].blob_key}
    assert count(cache.engine, "SELECT count(*) FROM semcache_entries") == 1
    assert count(cache.engine, "SELECT count(*) FROM semcache_events WHERE kind = 'generated'") == 1


WORKER = """
import sys, threading, json
sys.path[:0] = [{root!r}, {tests!r}]
from concurrent.futures import ThreadPoolExecutor
from db.engine import create_db_engine
from semcache import SemanticCache
from semcache.blobstores import LocalBlobStore
from semcache.embedders import LocalEmbedder
from helpers import Counting
from semcache.pixelart import EmojiPixelArtGenerator
embedder = LocalEmbedder()
generator = Counting(EmojiPixelArtGenerator(embedder, cache_dir={emoji!r}), delay=0.5)
cache = SemanticCache(create_db_engine({url!r}, pool_size=10), embedder, generator, LocalBlobStore({blobs!r}))
embedder.embed(["warm up"]); generator.inner.prepare()
print("ready", flush=True)
sys.stdin.readline()
with ThreadPoolExecutor(8) as pool:
    kinds = list(pool.map(lambda _: cache.get("Windmill").kind, range(8)))
print(json.dumps({{"calls": len(generator.calls), "kinds": kinds}}), flush=True)
"""


def test_concurrent_misses_from_two_processes_generate_once(db, pg_url, blobs, emoji_cache_dir):
    script = WORKER.format(root=str(ROOT), tests=str(ROOT / "tests"), url=pg_url, blobs=str(blobs.root),
                           emoji=str(emoji_cache_dir))
    procs = [subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [json.loads(proc.communicate(timeout=120)[0].strip().splitlines()[-1]) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert sum(o["calls"] for o in outputs) == 1
    kinds = [k for o in outputs for k in o["kinds"]]
    assert kinds.count("generated") == 1 and kinds.count("exact") == 15
    assert count(db, "SELECT count(*) FROM semcache_entries") == 1


# ---------------------------------------------------------------------------- failures store nothing

def test_failed_generation_stores_nothing_and_is_recorded(db, embedder, blobs):
    cache = SemanticCache(db, embedder, FailingGenerator(), blobs)
    with pytest.raises(GenerationError, match="try again"):
        cache.get("volcano")
    assert count(db, "SELECT count(*) FROM semcache_entries") == 0
    assert not any(p.is_file() for p in blobs.root.rglob("*"))
    with db.connect() as conn:
        event = conn.execute(text("SELECT kind, error FROM semcache_events")).one()
    assert event.kind == "error" and "image service is down" in event.error


def test_failed_blob_write_stores_no_row(db, embedder, generator, tmp_path):
    cache = SemanticCache(db, embedder, generator, FailingPuts(tmp_path / "b"))
    with pytest.raises(BlobStoreError):
        cache.get("volcano")
    assert count(db, "SELECT count(*) FROM semcache_entries") == 0
    assert count(db, "SELECT count(*) FROM semcache_embeddings WHERE entry_id IS NOT NULL") == 0
    ok = SemanticCache(db, embedder, generator, LocalBlobStore(tmp_path / "b"))
    assert ok.get("volcano").kind == "generated"


def test_missing_blob_is_regenerated_not_an_error(cache, blobs, generator):
    first = cache.get("tractor")
    blobs.delete(first.blob_key)
    again = cache.get("tractor")
    assert again.kind == "generated" and again.image.startswith(b"\x89PNG")
    assert blobs.exists(again.blob_key) and len(generator.calls) == 2


# ---------------------------------------------------------------------------- feedback

def test_wrong_match_feedback_bans_the_pair(cache, generator):
    cache.get("dog")
    assert cache.get("puppy").served_key == "dog"
    admin = CacheAdmin(cache)
    admin.mark_wrong("Puppy", "dog", distance=0.3, actor="owner", note="wants a puppy picture")
    result = cache.get("puppy")
    assert result.kind == "generated" and result.served_key == "puppy"
    assert cache.get("puppy").kind == "exact"
    preview = {n.key: n for n in cache.neighbours("puppy", k=2)}
    assert preview["dog"].banned and not preview["dog"].would_serve
    (row,) = admin.feedback()
    assert (row.query_key, row.entry_key, row.verdict, row.actor) == ("puppy", "dog", "wrong", "owner")
    assert cache.get("doggy").served_key in {"dog", "puppy"}, "the ban is for that pair only"


def test_neighbours_preview_says_which_would_be_served(cache):
    for topic in ["dog", "cat", "rocket"]:
        cache.get(topic)
    near = cache.neighbours("puppy", k=3, threshold=0.35)
    assert [n.key for n in near][0] == "dog" and near[0].would_serve
    assert [n.distance for n in near] == sorted(n.distance for n in near)
    assert sum(n.would_serve for n in near) == 1
    assert not any(n.would_serve for n in cache.neighbours("puppy", threshold=0.0))


# ---------------------------------------------------------------------------- entries and eviction

def test_delete_removes_entry_and_unshared_blob(cache, blobs):
    dog = cache.get("dog")
    admin = CacheAdmin(cache)
    assert admin.entry("DOG").times_served == 0
    assert admin.delete("dog") and not admin.delete("dog")
    assert admin.entry("dog") is None and not blobs.exists(dog.blob_key)


def test_max_entries_evicts_least_recently_served(db, embedder, generator, blobs):
    cache = SemanticCache(db, embedder, generator, blobs, max_entries=2)
    cache.get("dog")
    cache.get("rocket")
    cache.get("dog")  # dog is now more recently served than rocket
    cache.get("pizza")
    assert sorted(e.key for e in CacheAdmin(cache).entries()) == ["dog", "pizza"]


def test_max_age_regenerates_stale_entries(db, embedder, generator, blobs):
    cache = SemanticCache(db, embedder, generator, blobs, max_age=timedelta(hours=1))
    cache.get("dog")
    with db.begin() as conn:
        conn.execute(text("UPDATE semcache_entries SET created_at = now() - interval '2 hours'"))
    assert cache.get("dog").kind == "generated"
    assert count(db, "SELECT count(*) FROM semcache_entries") == 1
    assert CacheAdmin(cache).evict() == 0


# ---------------------------------------------------------------------------- models and spaces

def test_model_switch_keeps_spaces_apart_and_reembed_fills_the_new_one(db, embedder, generator, blobs,
                                                                     fake_openai):
    from semcache.embedders import OpenAIEmbedder

    local = SemanticCache(db, embedder, generator, blobs)
    local.get("dog")
    local.get("rocket")
    remote_embedder = OpenAIEmbedder(fake_openai.api_key, base_url=fake_openai.base_url,
                                     model="text-embedding-3-small", dimensions=384, max_retries=0)
    fake_openai.vectors.update({
        "dog": unit([1, 0.1, 0]), "puppy": unit([1, 0.2, 0]), "rocket": unit([0, 0, 1])})
    remote = SemanticCache(db, remote_embedder, generator, blobs)
    assert remote.space().id != local.space().id
    assert remote.get("dog").kind == "exact", "exact hits do not depend on the model"
    assert remote.get("puppy").kind == "generated", "the local model's vectors are not searched"

    fake_openai.clear_requests()
    assert CacheAdmin(remote).reembed(remote_embedder).embedded == 2  # dog and rocket; puppy was made in this space
    assert sorted(fake_openai.embedded_texts()) == ["dog", "rocket"]
    CacheAdmin(local).delete("puppy")
    fake_openai.clear_requests()
    result = remote.get("puppy")
    assert result.kind == "semantic" and result.served_key == "dog"
    assert fake_openai.embedded_texts() == [], "puppy's vector stays cached after its entry is gone"
    with db.connect() as conn:
        per_space = dict(conn.execute(text("SELECT space_id, count(entry_id) FROM semcache_embeddings "
                                           "GROUP BY space_id")).all())
    assert per_space == {local.space().id: 2, remote.space().id: 2}
    assert CacheAdmin(remote).reembed(remote_embedder).embedded == 0


def unit(values):
    v = np.zeros(384, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


# ---------------------------------------------------------------------------- hostile topics

@pytest.mark.parametrize("topic", ["../../etc/passwd", "/etc/shadow", "..\\..\\boot.ini", "a/../../b",
                                   "'; DROP TABLE semcache_entries; --", "%s %n {0}"])
def test_hostile_phrases_are_just_phrases(cache, blobs, topic):
    result = cache.get(topic)
    assert result.kind == "generated" and result.key == topic.casefold()
    assert len(result.blob_key) == 68 and result.blob_key.endswith(".png")
    files = [p for p in blobs.root.rglob("*") if p.is_file()]
    assert files and all(p.resolve().is_relative_to(blobs.root.resolve()) for p in files)
    assert cache.get(topic).kind == "exact"


@pytest.mark.parametrize("topic,message", [("", "empty"), ("   \t\n", "empty"), ("x" * 201, "at most 200"),
                                           ("x" * 10_000, "at most 200"), (None, "must be text")])
def test_unusable_topics_are_refused_clearly(cache, topic, message):
    with pytest.raises(InvalidTopic, match=message):
        cache.get(topic)
    assert count(cache.engine, "SELECT count(*) FROM semcache_entries") == 0


def test_control_characters_and_other_scripts(cache):
    assert cache.get("dog\x00\x07 house").key == "dog house"
    assert cache.get("Straße").key == "strasse"
    cache.get("dog")
    assert cache.get("ｄｏｇ").kind == "exact"  # NFKC: full-width letters are "dog"
    assert cache.get("東京 🗼").kind == "generated"


# ---------------------------------------------------------------------------- S3 end to end

def test_cache_on_real_s3(db, embedder, generator, s3_server):
    s3_server.start()
    store = S3BlobStore(s3_server.create_bucket(), prefix="cache/", endpoint_url=s3_server.endpoint_url,
                        region_name=s3_server.region, access_key_id=s3_server.access_key,
                        secret_access_key=s3_server.secret_key)
    cache = SemanticCache(db, embedder, generator, store)
    made = cache.get("sailboat")
    assert store.exists(made.blob_key)
    hit = cache.get("sail boat")
    assert hit.kind in {"semantic", "exact"} and hit.image == made.image and hit.timings.blob_ms > 0


# ---------------------------------------------------------------------------- schema and command line

def test_migrations_match_the_declared_schema(engine):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from db.models import include_object, metadata

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_command_line_get_json_and_stats(db, pg_url, tmp_path, emoji_cache_dir):
    env = {**os.environ, "DATABASE_URL": pg_url, "DATA_DIR": str(tmp_path), "BLOB_DIR": str(tmp_path / "b"),
           "EMBEDDING_PROVIDER": "local", "IMAGE_PROVIDER": "offline"}
    (tmp_path / "emoji-index").symlink_to(emoji_cache_dir)

    def run(*args):
        done = subprocess.run([sys.executable, "-m", "cache_cli", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = tmp_path / "dog.png"
    first = json.loads(run("get", "dog", "--json", "--out", str(out)))
    assert first["kind"] == "generated" and first["served_key"] == "dog" and first["cost_spent_usd"] == 0.04
    assert set(first["timings"]) == {"embed_ms", "search_ms", "generate_ms", "blob_ms", "total_ms"}
    assert out.read_bytes().startswith(b"\x89PNG")
    second = json.loads(run("get", "puppy", "--threshold", "0.5", "--json"))
    assert second["kind"] == "semantic" and second["served_key"] == "dog" and second["distance"] > 0
    assert "generated 1" in run("stats") and json.loads(run("stats", "--json"))["semantic_hits"] == 1
    assert run("threshold", "0.2").strip() == "0.2000"
    bad = subprocess.run([sys.executable, "-m", "cache_cli", "threshold", "3"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "between 0" in bad.stderr


def test_the_library_command_line_builds_its_cache_from_flags(db, pg_url, tmp_path, emoji_cache_dir):
    """`python -m semcache` runs without the app beside it: the database, blob folder and emoji
    index come as flags, and no app setting in the environment is read."""
    import shutil

    shutil.copytree(ROOT / "semcache", tmp_path / "lib" / "semcache")  # the library alone, no app beside it
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "lib"), "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
           "BLOB_DIR": "/nonexistent"}
    flags = ["--database-url", pg_url, "--blob-dir", str(tmp_path / "blobs"), "--emoji-index", str(emoji_cache_dir)]

    def run(*args):
        return subprocess.run([sys.executable, "-m", "semcache", *flags, *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    made = run("get", "dog", "--json")
    assert made.returncode == 0, made.stderr
    first = json.loads(made.stdout)
    assert first["kind"] == "generated" and first["served_key"] == "dog"
    assert (tmp_path / "blobs").is_dir() and any((tmp_path / "blobs").rglob("*.png"))
    assert json.loads(run("get", "dogs", "--json").stdout)["kind"] in {"exact", "semantic"}
    assert run("threshold", "3").returncode == 1
    missing = subprocess.run([sys.executable, "-m", "semcache", "stats"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "--database-url" in missing.stderr


def test_an_embedding_asked_for_first_is_not_computed_again_by_get(cache, embedder):
    vector = cache.embedding("Kitten")
    assert vector.shape == (384,) and embedder.calls == ["kitten"]
    result = cache.get("kitten")
    assert not result.embedded and embedder.calls == ["kitten"]
