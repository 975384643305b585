"""Exceptions raised by semcache.

    SemcacheError                 base of everything below
    ├── InvalidThreshold          threshold outside [0, 2] (also a ValueError)
    ├── InvalidTopic              empty, too long, or unusable topic text (also a ValueError)
    ├── EmbeddingError            the embedding model failed or timed out
    ├── GenerationError           the image generator failed or timed out; nothing was stored
    ├── BlobStoreError            the blob store failed to read or write
    │   └── BlobNotFound          a blob key has no object behind it
    ├── BudgetExceeded            a daily limit on new pictures is reached (hits are still served)
    └── StorageError              the cache's database failed: not answering, or refusing a request
                                  (the database driver's error is its __cause__)

Each message is a sentence a person can act on.
"""

from __future__ import annotations


class SemcacheError(Exception):
    """Base class of every error semcache raises on purpose."""


class InvalidThreshold(SemcacheError, ValueError):
    pass


class InvalidTopic(SemcacheError, ValueError):
    pass


class EmbeddingError(SemcacheError):
    pass


class GenerationError(SemcacheError):
    may_have_been_billed: bool = False
    """Set by a generator whose request reached the image service (a timeout, an answer it
    could not use): the cost guard then keeps the picture counted."""


class BlobStoreError(SemcacheError):
    pass


class BlobNotFound(BlobStoreError):
    pass


class BudgetExceeded(SemcacheError):
    pass


class StorageError(SemcacheError):
    unavailable: bool = False
    """The database did not answer (down, restarting, out of reach), rather than refusing."""
    connection_lost: bool = False
    """The database dropped the connection mid-call (a restart): the call may succeed on a new one."""
