"""semcache: a semantic cache for expensive generated images, on PostgreSQL + pgvector.

`SemanticCache.get(topic)` answers with the image for a phrase: from the exact key, from the
nearest cached phrase within a cosine-distance threshold, or newly generated. Its parts are
passed in: an `Embedder`, a `Generator` and a `BlobStore` (see `semcache.interfaces`).
`CacheAdmin(cache)` lists, deletes and judges its entries; `semcache.store` holds every statement.
"""

from semcache.admin import CacheAdmin, Entry, Stats
from semcache.cache import CacheResult, Neighbour, SemanticCache, Timings
from semcache.errors import (
    BlobNotFound, BlobStoreError, BudgetExceeded, EmbeddingError, GenerationError, InvalidThreshold, InvalidTopic,
    SemcacheError, StorageError,
)
from semcache.interfaces import BlobStore, Embedder, GeneratedImage, Generator
from semcache.normalize import check_threshold, normalize

__all__ = [
    "BlobNotFound", "BlobStore", "BlobStoreError", "BudgetExceeded", "CacheAdmin", "CacheResult", "Embedder",
    "EmbeddingError", "Entry", "GeneratedImage", "GenerationError", "Generator", "InvalidThreshold", "InvalidTopic", "Neighbour",
    "SemanticCache", "SemcacheError", "Stats", "StorageError", "Timings", "check_threshold", "normalize",
]
