"""Builds the app's shared parts from `Settings`: the database engine, the embedder, the image
generator, the blob store and the semantic cache. The app, the command lines and the
benchmarks all wire themselves here, so they run on the same settings and embedded defaults.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from db.engine import create_db_engine, embedded_postgres_url, migrate
from semcache import SemanticCache
from semcache.interfaces import BlobStore, Embedder, Generator
from settings import Settings


def database_url(settings: Settings) -> str:
    return settings.database_url or embedded_postgres_url(settings.data_dir / "postgres")


def build_engine(settings: Settings, *, run_migrations: bool = True) -> Engine:
    engine = create_db_engine(database_url(settings))
    if run_migrations:
        migrate(engine)
    return engine


def build_embedder(settings: Settings, *, model: str | None = None) -> Embedder:
    """The configured embedder; ``model`` overrides it ("local" or an OpenAI model name)."""
    from semcache.embedders import LocalEmbedder, OpenAIEmbedder

    use_openai = settings.use_openai_embeddings if model is None else model != "local"
    if not use_openai:
        return LocalEmbedder()
    if not settings.openai_api_key:
        raise SystemExit("OpenAI embeddings need OPENAI_API_KEY; set it, or use the local model.")
    return OpenAIEmbedder(
        settings.openai_api_key, base_url=settings.openai_base_url, model=model or settings.embedding_model,
        dimensions=settings.embedding_dimensions if model is None else None,
        timeout=settings.openai_timeout_seconds, max_retries=settings.openai_max_retries)


def build_matcher(settings: Settings, *, lexicon: bool | None = None, lemmas: bool | None = None):
    """The cache's decision beyond the distance, as configured (see `semcache.matching`)."""
    from semcache.lexicon import WordNet
    from semcache.matching import Matcher

    lexicon = settings.cache_lexicon if lexicon is None else lexicon
    lemmas = settings.cache_lemmas if lemmas is None else lemmas
    matcher = Matcher(wordnet=WordNet(settings.wordnet_dir) if lexicon or lemmas else None,
                      lemmas=lemmas, lexicon=lexicon)
    if matcher.wordnet is not None:
        matcher.wordnet.load()  # now, not in the first user's lookup
    return matcher


def build_generator(settings: Settings, embedder: Embedder) -> Generator:
    if settings.use_openai_images:
        from semcache.openai_images import OpenAIImageGenerator

        if not settings.openai_api_key:
            raise SystemExit("OpenAI images need OPENAI_API_KEY; set it, or use IMAGE_PROVIDER=offline.")
        return OpenAIImageGenerator(
            settings.openai_api_key, base_url=settings.openai_base_url, model=settings.image_model,
            price_usd=settings.image_price_usd, timeout=settings.openai_timeout_seconds,
            max_retries=settings.openai_max_retries)
    from semcache.pixelart import EmojiPixelArtGenerator

    return EmojiPixelArtGenerator(embedder, price_usd=settings.image_price_usd,
                                  cache_dir=settings.data_dir / "emoji-index")


def build_blob_store(settings: Settings) -> BlobStore:
    from semcache.blobstores import LocalBlobStore, S3BlobStore

    if settings.s3_bucket:
        return S3BlobStore(
            settings.s3_bucket, prefix=settings.s3_prefix, endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region, access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key)
    return LocalBlobStore(settings.blob_folder)


def build_cache(settings: Settings, *, engine: Engine | None = None, embedder: Embedder | None = None) -> SemanticCache:
    engine = engine or build_engine(settings)
    embedder = embedder or build_embedder(settings)
    generator = build_generator(settings, embedder)
    if settings.embed_template:
        from semcache.embedders import TemplatedEmbedder

        embedder = TemplatedEmbedder(embedder, settings.embed_template)
    max_age = timedelta(days=settings.cache_max_age_days) if settings.cache_max_age_days else None
    return SemanticCache(
        engine, embedder, generator, build_blob_store(settings),
        default_threshold=settings.default_threshold, max_topic_chars=settings.max_topic_chars,
        max_entries=settings.cache_max_entries, max_age=max_age, ef_search=settings.hnsw_ef_search,
        matcher=build_matcher(settings), guard=build_guard(settings, engine))


def build_guard(settings: Settings, engine: Engine):
    from semcache.budget import CostGuard

    return CostGuard(engine, images_per_user=settings.daily_images_per_user, budget_usd=settings.daily_budget_usd)
