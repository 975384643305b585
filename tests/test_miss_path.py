"""The cache's miss path holds no pooled connection while the generator runs: a key is claimed in
a committed row with a lease (`semcache_pending`), generated with nothing checked out, and
stored with its claim removed. Real PostgreSQL, the local model, the offline generator; the
engines here have tiny pools so that any lookup holding a connection it should not would wait
for the pool and fail."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from fake_openai import API_KEY, FakeOpenAI, fake_openai  # noqa: F401  (fixture)
from semcache import BlobStoreError, GenerationError, SemanticCache
from semcache.blobstores import LocalBlobStore
from semcache.budget import CostGuard
from semcache.interfaces import GeneratedImage
from semcache.openai_images import OpenAIImageGenerator

TOPICS = ["dog", "rocket", "pizza", "guitar", "volcano", "bicycle", "umbrella", "castle"]


def count(engine, sql: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


@pytest.fixture
def small_engine(db, pg_url):
    """Two connections and no overflow; a checkout that waits more than 5 s fails."""
    engine = create_engine(make_url(pg_url), pool_size=2, max_overflow=0, pool_timeout=5, pool_pre_ping=True)
    yield engine
    engine.dispose()


@pytest.fixture
def one_connection(db, pg_url):
    """One connection: a lookup that asks the pool for a second while holding the first fails."""
    engine = create_engine(make_url(pg_url), pool_size=1, max_overflow=0, pool_timeout=3, pool_pre_ping=True)
    yield engine
    engine.dispose()


class Gated:
    """The real generator, held inside generate() until the test opens the gate."""

    def __init__(self, inner, fail_first: int = 0) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.calls: list[str] = []
        self.fail_first = fail_first
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, topic, embedding=None) -> GeneratedImage:
        with self._lock:
            self.calls.append(topic)
            failing = len(self.calls) <= self.fail_first
        if not self.gate.wait(60):
            raise AssertionError("the gate was never opened")
        if failing:
            raise GenerationError("The image service is down; try again in a minute.")
        return self.inner.generate(topic, embedding)


class Slow:
    def __init__(self, inner, seconds: float) -> None:
        self.inner, self.seconds, self.calls = inner, seconds, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, topic, embedding=None) -> GeneratedImage:
        self.calls.append(topic)
        time.sleep(self.seconds)
        return self.inner.generate(topic, embedding)


def wait_until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.02)


def test_concurrent_new_topics_hold_no_connection_while_generating(small_engine, local_embedder, emoji_generator,
                                                                   tmp_path):
    blobs = LocalBlobStore(tmp_path / "blobs")
    SemanticCache(small_engine, local_embedder, emoji_generator, blobs).get("lighthouse")
    gated = Gated(emoji_generator)
    cache = SemanticCache(small_engine, local_embedder, gated, blobs, generation_lease=timedelta(seconds=120))
    with ThreadPoolExecutor(len(TOPICS)) as pool:
        futures = [pool.submit(cache.get, topic, threshold=0.0) for topic in TOPICS]
        try:
            wait_until(lambda: len(gated.calls) == len(TOPICS), "every generator running")
            assert small_engine.pool.checkedout() == 0, "no connection is held while the generators run"
            hit = cache.get("Lighthouse")
            assert hit.kind == "exact" and hit.image.startswith(b"\x89PNG")
            assert count(small_engine, "SELECT count(*) FROM semcache_pending") == len(TOPICS)
        finally:
            gated.gate.set()
        results = [future.result() for future in futures]
    assert [r.kind for r in results] == ["generated"] * len(TOPICS)
    assert sorted(gated.calls) == sorted(TOPICS), "every topic generated once"
    assert count(small_engine, "SELECT count(*) FROM semcache_entries") == len(TOPICS) + 1
    assert count(small_engine, "SELECT count(*) FROM semcache_pending") == 0
    assert count(small_engine, "SELECT count(*) FROM semcache_events WHERE kind = 'error'") == 0


def test_sixteen_threads_asking_one_new_topic_on_a_small_pool_generate_once(small_engine, local_embedder,
                                                                            emoji_generator, tmp_path):
    gated = Gated(emoji_generator)
    cache = SemanticCache(small_engine, local_embedder, gated, LocalBlobStore(tmp_path / "blobs"))
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(cache.get, "Harbour") for _ in range(16)]
        wait_until(lambda: gated.calls, "the generator running")
        time.sleep(0.3)  # the other fifteen are waiting for the claim by now
        gated.gate.set()
        results = [future.result() for future in futures]
    assert gated.calls == ["Harbour"]
    assert sorted(r.kind for r in results) == ["exact"] * 15 + ["generated"]
    assert {r.blob_key for r in results} == {results[0].blob_key}
    assert count(small_engine, "SELECT count(*) FROM semcache_events WHERE kind = 'generated'") == 1
    assert count(small_engine, "SELECT count(*) FROM semcache_pending") == 0


def test_a_claim_whose_lease_ran_out_is_taken_over(db, local_embedder, emoji_generator, tmp_path):
    cache = SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(tmp_path / "blobs"))
    with db.begin() as conn:  # a process that died while generating, one lease ago, and one that dies now
        conn.execute(text("INSERT INTO semcache_pending (canon, key, owner, lease_until) VALUES "
                          "('anchor', 'anchor', 'dead', now() - interval '1 second'), "
                          "('compass', 'compass', 'dying', now() + interval '1 second')"))
    assert cache.get("anchor").kind == "generated"
    assert cache.get("compass").kind == "generated", "a live lease is waited for, then taken over"
    assert count(db, "SELECT count(*) FROM semcache_pending") == 0
    assert count(db, "SELECT count(*) FROM semcache_entries") == 2


def test_a_long_generation_renews_its_lease(db, local_embedder, emoji_generator, tmp_path):
    slow = Slow(emoji_generator, seconds=2.5)
    blobs = LocalBlobStore(tmp_path / "blobs")
    first = SemanticCache(db, local_embedder, slow, blobs, generation_lease=timedelta(seconds=0.9))
    other = SemanticCache(db, local_embedder, slow, blobs, generation_lease=timedelta(seconds=0.9))  # another process
    other.embedding("telescope")
    with ThreadPoolExecutor(2) as pool:
        making = pool.submit(first.get, "telescope")
        wait_until(lambda: slow.calls, "the generator running")
        waiting = pool.submit(other.get, "telescope")
        kinds = sorted([making.result().kind, waiting.result().kind])
    assert slow.calls == ["telescope"], "the claim outlived its first lease: nobody took it over"
    assert kinds == ["exact", "generated"]


def test_a_failed_generation_leaves_no_claim_and_no_entry_and_a_waiter_makes_it(db, local_embedder,
                                                                               emoji_generator, tmp_path):
    gated = Gated(emoji_generator, fail_first=1)
    cache = SemanticCache(db, local_embedder, gated, LocalBlobStore(tmp_path / "blobs"))
    with ThreadPoolExecutor(2) as pool:
        failing = pool.submit(cache.get, "lantern")
        wait_until(lambda: gated.calls, "the first generator running")
        waiting = pool.submit(cache.get, "lantern")
        time.sleep(0.3)
        assert len(gated.calls) == 1, "the second lookup waits for the claim"
        gated.gate.set()
        with pytest.raises(GenerationError, match="try again"):
            failing.result()
        made = waiting.result()
    assert made.kind == "generated" and gated.calls == ["lantern", "lantern"]
    assert count(db, "SELECT count(*) FROM semcache_entries") == 1
    assert count(db, "SELECT count(*) FROM semcache_pending") == 0

    broken = SemanticCache(db, local_embedder, Gated(emoji_generator, fail_first=1), LocalBlobStore(tmp_path / "b"))
    broken.generator.gate.set()
    with pytest.raises(GenerationError):
        broken.get("kettle")
    assert count(db, "SELECT count(*) FROM semcache_pending") == 0
    assert count(db, "SELECT count(*) FROM semcache_entries WHERE key = 'kettle'") == 0


class FailingPuts(LocalBlobStore):
    def put(self, data: bytes, content_type: str = "image/png") -> str:
        raise BlobStoreError("The image store refused the write.")


def test_every_path_runs_on_a_single_connection(one_connection, local_embedder, emoji_generator, tmp_path):
    """Exact, semantic, generated (with the cost guard), a missing blob, a refusal, failures:
    none asks the pool for a second connection while holding one."""
    blobs = LocalBlobStore(tmp_path / "blobs")
    guard = CostGuard(one_connection, images_per_user=3)
    cache = SemanticCache(one_connection, local_embedder, emoji_generator, blobs, guard=guard, max_entries=10)
    made = cache.get("dog", user="alice")
    assert made.kind == "generated"
    assert cache.get("dog", user="alice").kind == "exact"
    assert cache.get("puppy", user="alice").kind == "semantic"
    blobs.delete(made.blob_key)
    assert cache.get("dog", user="alice").kind == "generated"
    assert cache.get("rocket", user="alice").kind == "generated"
    with pytest.raises(Exception, match="daily limit of 3"):
        cache.get("pizza", user="alice")
    failing = SemanticCache(one_connection, local_embedder, Gated(emoji_generator, fail_first=1), blobs,
                            guard=guard)
    failing.generator.gate.set()
    with pytest.raises(GenerationError):
        failing.get("guitar", user="bob")
    with pytest.raises(BlobStoreError):
        SemanticCache(one_connection, local_embedder, emoji_generator, FailingPuts(tmp_path / "x"),
                      guard=guard).get("castle", user="bob")
    assert one_connection.pool.checkedout() == 0
    assert count(one_connection, "SELECT count(*) FROM semcache_pending") == 0


def test_only_a_generation_that_cannot_have_been_billed_gives_its_reservation_back(db, local_embedder,
                                                                                   emoji_generator, tmp_path):
    class Billed:
        name, price_usd = "billed", 0.04

        def generate(self, topic, embedding=None):
            error = GenerationError("The image service did not answer in time; try again later.")
            error.may_have_been_billed = True
            raise error

    guard = CostGuard(db)
    with pytest.raises(GenerationError):
        SemanticCache(db, local_embedder, Billed(), LocalBlobStore(tmp_path / "a"), guard=guard).get("dog", user="al")
    with pytest.raises(BlobStoreError):  # the picture was made, then could not be stored
        SemanticCache(db, local_embedder, emoji_generator, FailingPuts(tmp_path / "b"), guard=guard).get(
            "rocket", user="al")
    usage = guard.usage("al")
    assert (usage.images, usage.user_images) == (2, 2)
    assert count(db, "SELECT count(*) FROM semcache_entries") == 0


def _openai(server: FakeOpenAI) -> OpenAIImageGenerator:
    return OpenAIImageGenerator(API_KEY, base_url=server.base_url, timeout=0.5, max_retries=0,
                                backoff_seconds=0.01, max_backoff_seconds=0.05)


def test_openai_failures_say_whether_they_may_have_been_billed(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(status=500)
    with pytest.raises(GenerationError) as server_error:
        _openai(fake_openai).generate("dog")
    fake_openai.hang_next(seconds=5)
    with pytest.raises(GenerationError) as timeout:
        _openai(fake_openai).generate("dog")
    fake_openai.release_hangs()
    fake_openai.image_bytes = b"this is not an image at all"
    with pytest.raises(GenerationError) as unreadable:
        _openai(fake_openai).generate("dog")
    assert not server_error.value.may_have_been_billed
    assert timeout.value.may_have_been_billed and unreadable.value.may_have_been_billed


# ---------------------------------------------------------------------------- get(vector=...)

class CountingEmbedder:
    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed(self, texts):
        self.calls.extend(texts)
        return self.inner.embed(texts)


def test_a_caller_with_the_vector_saves_the_embedding_call(db, local_embedder, emoji_generator, tmp_path):
    embedder = CountingEmbedder(local_embedder)
    cache = SemanticCache(db, embedder, emoji_generator, LocalBlobStore(tmp_path / "blobs"))
    dog, puppy = local_embedder.embed(["dog", "puppy"])
    assert cache.get("dog", vector=dog).kind == "generated"
    hit = cache.get("Puppy", vector=puppy.tolist(), threshold=0.5)
    assert hit.kind == "semantic" and hit.served_key == "dog" and not hit.embedded
    assert embedder.calls == []
    np.testing.assert_allclose(cache.embedding("puppy"), puppy, atol=1e-6)  # stored as if embedded
    assert cache.get("puppy", threshold=0.5).kind == "semantic" and embedder.calls == []


@pytest.mark.parametrize("vector,match", [
    (np.zeros(383, dtype=np.float32) + 0.05, r"shape \(383,\).*384 dimensions"),
    (np.ones((2, 384), dtype=np.float32), r"shape \(2, 384\)"),
    (np.full(384, np.nan, dtype=np.float32), "finite"),
    (np.zeros(384, dtype=np.float32), "all zeros"),
    (["a"] * 384, "sequence of numbers"),
])
def test_a_vector_of_the_wrong_shape_is_refused(db, local_embedder, emoji_generator, tmp_path, vector, match):
    cache = SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(tmp_path / "blobs"))
    with pytest.raises(ValueError, match=match):
        cache.get("dog", vector=vector)
    assert count(db, "SELECT count(*) FROM semcache_embeddings") == 0
