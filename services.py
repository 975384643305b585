"""Builds the app's shared parts from `Settings`: the database engine, the embedder, the image
generator, the blob store and the semantic cache. The app, the command lines and the
benchmarks all wire themselves here, so they run on the same settings and embedded defaults.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from db.engine import EmbeddedPostgres, create_db_engine, embedded_server, migrate
from semcache import SemanticCache
from semcache.interfaces import BlobStore, Embedder, Generator
from settings import Settings


def embedded_database(settings: Settings) -> EmbeddedPostgres | None:
    """The embedded server when DATABASE_URL is unset (its folder recorded in DATA_DIR), else None."""
    return None if settings.database_url else embedded_server(settings.data_dir / "postgres")


def database_url(settings: Settings) -> str:
    server = embedded_database(settings)
    return server.url if server else settings.database_url


def build_engine(settings: Settings, *, run_migrations: bool = True) -> Engine:
    """The engine; on the embedded server it starts the server again if a connection finds it dead."""
    server = embedded_database(settings)
    engine = create_db_engine(server.url if server else settings.database_url, server=server)
    if run_migrations:
        migrate(engine)
    return engine


def build_embedder(settings: Settings, *, model: str | None = None) -> Embedder:
    """The configured embedder; ``model`` overrides it ("local" or an OpenAI model name)."""
    from semcache.embedders import OpenAIEmbedder

    use_openai = settings.use_openai_embeddings if model is None else model != "local"
    if not use_openai:
        return build_local_embedder(settings)
    if not settings.openai_api_key:
        raise SystemExit("OpenAI embeddings need OPENAI_API_KEY; set it, or use the local model.")
    return OpenAIEmbedder(
        settings.openai_api_key, base_url=settings.openai_base_url, model=model or settings.embedding_model,
        dimensions=settings.embedding_dimensions if model is None else None,
        timeout=settings.openai_timeout_seconds, max_retries=settings.openai_max_retries)


def build_local_embedder(settings: Settings, *, backend: str | None = None) -> Embedder:
    """all-MiniLM-L6-v2 on ``LOCAL_EMBEDDING_BACKEND`` (``backend`` overrides it). With "auto",
    ONNX Runtime, and torch with the reason logged if ONNX Runtime or the export fails; every
    backend gives the same vectors under the same model name."""
    from semcache.embedders import LocalEmbedder

    backend = backend or settings.local_embedding_backend
    if backend == "torch":
        return LocalEmbedder()
    from semcache.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder(settings.onnx_folder, threads=settings.local_embedding_threads,
                        fallback=LocalEmbedder() if backend == "auto" else None)


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
        matcher=build_matcher(settings), guard=build_guard(settings, engine),
        entry_thresholds=settings.cache_entry_thresholds, entry_error_bound=settings.cache_entry_error_bound)


def build_guard(settings: Settings, engine: Engine):
    from semcache.budget import CostGuard

    return CostGuard(engine, images_per_user=settings.daily_images_per_user, budget_usd=settings.daily_budget_usd)


def build_upload_store(settings: Settings):
    """Where uploads wait for their import: S3 under S3_UPLOAD_PREFIX (workers on any machine
    read them), else DATA_DIR/uploads."""
    from semcache.blobstores import LocalBlobStore, S3BlobStore

    if settings.s3_bucket:
        return S3BlobStore(
            settings.s3_bucket, prefix=settings.s3_upload_prefix, endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region, access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key)
    return LocalBlobStore(settings.data_dir / "uploads")


def build_job_secrets(settings: Settings):
    """JOB_SECRET_KEY, or the key file made once in DATA_DIR."""
    from mail.jobs import JobSecrets

    if settings.job_secret_key:
        return JobSecrets(settings.job_secret_key)
    return JobSecrets.from_key_file(settings.data_dir / "job-secret.key")


def build_import_queue(settings: Settings, engine: Engine):
    """The app's side of the background imports (see `mail.jobs`)."""
    from mail.jobs import ImportQueue, job_app, psycopg_conninfo

    return ImportQueue(engine, job_app(psycopg_conninfo(database_url(settings))),
                       uploads=build_upload_store(settings), secrets=build_job_secrets(settings),
                       max_upload_mb=settings.max_upload_mb, max_message_mb=settings.max_message_mb,
                       imap_allow_private_hosts=settings.imap_allow_private_hosts)


def build_import_runner(settings: Settings, engine: Engine, embedder: Embedder | None):
    """What a worker imports with (see `mail.jobs_worker`)."""
    from mail.jobs_worker import ImportRunner

    admins = settings.admins | ({settings.default_owner.casefold()} if settings.auth_mode == "none" else set())
    return ImportRunner(engine=engine, embedder=embedder, uploads=build_upload_store(settings),
                        secrets=build_job_secrets(settings), data_dir=settings.data_dir,
                        max_message_mb=settings.max_message_mb, max_upload_mb=settings.max_upload_mb,
                        imap_allow_private_hosts=settings.imap_allow_private_hosts, admins=frozenset(admins))
