"""semcache: a semantic cache for expensive generated images, on PostgreSQL + pgvector.

`SemanticCache.get(topic)` answers with the image for a phrase: from the exact key, from the
nearest cached phrase within a cosine-distance threshold, or newly generated. Its parts are
passed in: an `Embedder`, a `Generator` and a `BlobStore` (see `semcache.interfaces`).
"""

from semcache.cache import CacheResult, Entry, Neighbour, SemanticCache, Stats, Timings
from semcache.errors import (
    BlobNotFound, BlobStoreError, BudgetExceeded, EmbeddingError, GenerationError, InvalidThreshold, InvalidTopic, SemcacheError,
)
from semcache.interfaces import BlobStore, Embedder, GeneratedImage, Generator
from semcache.normalize import check_threshold, normalize

__all__ = [
    "BlobNotFound", "BlobStore", "BlobStoreError", "BudgetExceeded", "CacheResult", "Embedder", "EmbeddingError", "Entry",
    "GeneratedImage", "GenerationError", "Generator", "InvalidThreshold", "InvalidTopic", "Neighbour",
    "SemanticCache", "SemcacheError", "Stats", "Timings", "check_threshold", "normalize",
]
