"""Regenerating a cached picture (`CacheAdmin.regenerate`): a different picture for the same
phrase, paid for and counted as a generation, in place of the old one only once it is stored."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from fake_openai import FakeOpenAI
from semcache import CacheAdmin, SemanticCache, report
from semcache.admin import REGENERATED
from semcache.blobstores import LocalBlobStore
from semcache.budget import CostGuard
from semcache.errors import BlobStoreError, BudgetExceeded, GenerationError, InvalidTopic
from semcache.openai_images import OpenAIImageGenerator


class RefusingPuts(LocalBlobStore):
    """A picture store that stops taking writes (reads and deletes still work)."""

    refuse = False

    def put(self, data: bytes, content_type: str = "image/png") -> str:
        if self.refuse:
            raise BlobStoreError("The image store refused the write.")
        return super().put(data, content_type)


@pytest.fixture
def blobs(tmp_path) -> RefusingPuts:
    return RefusingPuts(tmp_path / "blobs")


@pytest.fixture
def cache(db, local_embedder, emoji_generator, blobs) -> SemanticCache:
    return SemanticCache(db, local_embedder, emoji_generator, blobs, guard=CostGuard(db, images_per_user=10))


@pytest.fixture
def openai_cache(db, local_embedder, blobs, fake_openai: FakeOpenAI) -> SemanticCache:
    images = OpenAIImageGenerator(fake_openai.api_key, base_url=fake_openai.base_url, max_retries=0,
                                  backoff_seconds=0.01, max_backoff_seconds=0.05)
    return SemanticCache(db, local_embedder, images, blobs, guard=CostGuard(db, images_per_user=10))


def blob_files(blobs: LocalBlobStore) -> int:
    return sum(1 for path in blobs.root.rglob("*") if path.is_file() and not path.name.startswith("."))


def test_offline_each_regeneration_draws_the_next_emoji(cache: SemanticCache) -> None:
    admin = CacheAdmin(cache)
    first = cache.get("dog")
    seen, previous = [first.blob_key], first.detail
    for n in (1, 2, 3):
        done = admin.regenerate("dog", actor="boss")
        assert done.variant == n and done.previous_detail == previous
        previous = done.entry.detail
        assert done.entry.blob_key not in seen and done.entry.detail.startswith("emoji ")
        seen.append(done.entry.blob_key)
        served = cache.get("dog")
        assert served.kind == "exact" and served.blob_key == done.entry.blob_key
        assert served.image == cache.blobs.get(done.entry.blob_key)
    assert not any(cache.blobs.exists(key) for key in seen[:-1]), "the pictures replaced are deleted"
    assert blob_files(cache.blobs) == 1
    assert [e.phrase for e in admin.entries()] == ["dog"]


def test_a_regeneration_is_paid_and_counted_as_a_generation(cache: SemanticCache, db) -> None:
    admin = CacheAdmin(cache)
    cache.get("dog")
    cache.get("dog")
    before = report.totals(db)
    used = cache.guard.usage("boss").user_images
    admin.regenerate("dog", actor="boss")
    after = report.totals(db)
    price = cache.generator.price_usd
    assert after.generations == before.generations + 1
    assert after.spent_usd == pytest.approx(before.spent_usd + price)
    assert after.saved_usd == pytest.approx(before.saved_usd)
    assert after.hits == before.hits and after.entries == before.entries == 1
    assert cache.guard.usage("boss").user_images == used + 1
    assert admin.entry("dog").cost_usd == pytest.approx(2 * price)
    with db.connect() as conn:
        event = conn.execute(text("SELECT * FROM semcache_events ORDER BY id DESC LIMIT 1")).one()
    assert (event.kind, event.relation, event.key, float(event.cost_spent_usd)) == (
        "generated", REGENERATED, "dog", pytest.approx(price))
    assert event.entry_id == admin.entry("dog").id


def test_a_failed_store_keeps_the_old_picture(cache: SemanticCache, blobs: RefusingPuts, db) -> None:
    admin = CacheAdmin(cache)
    first = cache.get("dog")
    before = report.totals(db)
    blobs.refuse = True
    with pytest.raises(BlobStoreError):
        admin.regenerate("dog", actor="boss")
    blobs.refuse = False
    assert admin.entry("dog").blob_key == first.blob_key
    assert cache.get("dog").image == first.image
    after = report.totals(db)
    assert (after.generations, after.spent_usd) == (before.generations, before.spent_usd)
    assert blob_files(blobs) == 1


def test_with_openai_a_new_request_and_a_failure_changes_nothing(openai_cache: SemanticCache,
                                                                  fake_openai: FakeOpenAI, db) -> None:
    admin = CacheAdmin(openai_cache)
    first = openai_cache.get("dog", user="boss")
    used = openai_cache.guard.usage("boss").user_images
    before = report.totals(db)

    fake_openai.fail_next(status=500, times=1, path="/v1/images/generations")
    with pytest.raises(GenerationError):
        admin.regenerate("dog", actor="boss")
    assert admin.entry("dog").blob_key == first.blob_key
    assert openai_cache.guard.usage("boss").user_images == used, "a refused request is given back"
    assert report.totals(db).spent_usd == before.spent_usd

    fake_openai.clear_requests()
    done = admin.regenerate("dog", actor="boss")
    [request] = fake_openai.requests_to("/v1/images/generations")
    assert "Version 2" in request.json["prompt"] and "dog" in request.json["prompt"]
    assert done.entry.blob_key != first.blob_key and done.entry.detail == first.detail
    assert openai_cache.get("dog").image != first.image
    assert openai_cache.guard.usage("boss").user_images == used + 1
    assert report.totals(db).spent_usd == pytest.approx(before.spent_usd + openai_cache.generator.price_usd)


def test_over_the_daily_limit_nothing_is_made(db, local_embedder, emoji_generator, blobs) -> None:
    cache = SemanticCache(db, local_embedder, emoji_generator, blobs, guard=CostGuard(db, images_per_user=1))
    first = cache.get("dog", user="boss")
    with pytest.raises(BudgetExceeded):
        CacheAdmin(cache).regenerate("dog", actor="boss")
    assert CacheAdmin(cache).entry("dog").blob_key == first.blob_key
    assert report.totals(db).generations == 1


def test_a_phrase_with_no_picture_is_a_clear_error(cache: SemanticCache) -> None:
    with pytest.raises(InvalidTopic, match="No picture is cached for “cat”"):
        CacheAdmin(cache).regenerate("cat")
